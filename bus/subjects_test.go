package bus

import (
	"math"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

func TestValidName(t *testing.T) {
	tests := []struct {
		why  string
		s    string
		want bool
	}{
		{"empty", "", false},
		{"plain", "notifier", true},
		{"punctuation", "a-b_c:d/e@f#g$h%i&j+k=l~m!n?o,p;q'r\"s|t\\u^v`w(x)y[z]{}<", true},
		{"digits", "12345", true},
		{"MaxNameLen bytes", strings.Repeat("a", MaxNameLen), true},
		{"MaxNameLen+1 bytes", strings.Repeat("a", MaxNameLen+1), false},
		{"dot", "a.b", false},
		{"leading dot", ".a", false},
		{"trailing dot", "a.", false},
		{"only dot", ".", false},
		{"star", "a*", false},
		{"only star", "*", false},
		{"gt", "a>", false},
		{"only gt", ">", false},
		{"space", "a b", false},
		{"tab", "a\tb", false},
		{"newline", "a\nb", false},
		{"carriage return", "a\rb", false},
		{"NUL", "a\x00b", false},
		{"other C0 control", "a\x1bb", false},
		{"DEL", "a\x7fb", false},
		{"U+00A0 no-break space", "a\u00a0b", false},
		{"U+2028 line separator", "a\u2028b", false},
		{"U+3000 ideographic space", "a\u3000b", false},
		{"U+0085 next line", "a\u0085b", false},
		{"U+0080 C1 control", "a\u0080b", false},
		{"U+1680 ogham space", "\u1680", false},
		{"invalid UTF-8 0xff", "\xff", false},
		{"invalid UTF-8 inside", "a\xffb", false},
		{"truncated UTF-8", "h\xc3", false},
		{"UTF-8 surrogate", "a\xed\xa0\x80", false},
		{"valid non-ASCII", "héllo", true},
		{"CJK", "通知", true},
		{"emoji", "a😀b", true},
		{"non-ASCII then dot", "é.b", false},
		{"non-ASCII then star", "é*", false},
		{"non-ASCII then gt", "é>", false},
		{"non-ASCII then space", "é b", false},
		{"non-ASCII then tab", "é\tb", false},
		{"non-ASCII then NUL", "é\x00", false},
		{"non-ASCII then DEL", "é\x7f", false},
		{"non-ASCII then invalid UTF-8", "é\xff", false},
		{"64 two-byte runes = MaxNameLen bytes", strings.Repeat("é", MaxNameLen/2), true},
		{"MaxNameLen-1 ASCII + 2-byte rune", strings.Repeat("a", MaxNameLen-1) + "é", false},
	}
	for _, tt := range tests {
		if got := ValidName(tt.s); got != tt.want {
			t.Errorf("%s: ValidName(%q) = %v, want %v", tt.why, tt.s, got, tt.want)
		}
	}
}

func TestValidPrefix(t *testing.T) {
	tests := []struct {
		p    string
		want bool
	}{
		{"notifier", true},
		{DefaultPrefix, true},
		{"a.b", true},
		{"a.b.c", true},
		{"héllo.wörld", true},
		{"", false},
		{".", false},
		{"a..b", false},
		{".a", false},
		{"a.", false},
		{"a b", false},
		{"a.b c", false},
		{"a.*", false},
		{"a.>", false},
		{">", false},
		{"a\tb", false},
		{"a.\xff", false},
		{strings.Repeat("a", MaxNameLen) + "." + strings.Repeat("b", MaxNameLen), true},
		{"a." + strings.Repeat("b", MaxNameLen+1), false},
	}
	for _, tt := range tests {
		if got := ValidPrefix(tt.p); got != tt.want {
			t.Errorf("ValidPrefix(%q) = %v, want %v", tt.p, got, tt.want)
		}
	}
}

func TestParseAddr(t *testing.T) {
	long := strings.Repeat("o", MaxNameLen)
	tests := []struct {
		s           string
		object, cmd string
		id          int64
		ok          bool
	}{
		{"obj.cmd.1", "obj", "cmd", 1, true},
		{"obj.cmd.0", "obj", "cmd", 0, true},
		{"obj.cmd.-1", "obj", "cmd", -1, true},
		{"obj.cmd.-42", "obj", "cmd", -42, true},
		{"obj.cmd.9223372036854775807", "obj", "cmd", math.MaxInt64, true},
		{"obj.cmd.-9223372036854775808", "obj", "cmd", math.MinInt64, true},
		{"héllo.通知.7", "héllo", "通知", 7, true},
		{long + ".c.3", long, "c", 3, true},
		{"obj.cmd.9223372036854775808", "", "", 0, false},
		{"obj.cmd.-9223372036854775809", "", "", 0, false},
		{"obj.cmd.18446744073709551616", "", "", 0, false},
		{"", "", "", 0, false},
		{"obj", "", "", 0, false},
		{"obj.cmd", "", "", 0, false},
		{"obj.cmd.", "", "", 0, false},
		{".cmd.1", "", "", 0, false},
		{"obj..1", "", "", 0, false},
		{"..1", "", "", 0, false},
		{"obj.cmd.1.2", "", "", 0, false},
		{"obj.cmd.1.", "", "", 0, false},
		{"obj.cmd.x", "", "", 0, false},
		{"obj.cmd.0x10", "", "", 0, false},
		{"obj.cmd.1e3", "", "", 0, false},
		{"obj.cmd.1_000", "", "", 0, false},
		{"obj.cmd. 1", "", "", 0, false},
		{"obj.cmd.1 ", "", "", 0, false},
		{"obj.cmd.-", "", "", 0, false},
		{"ob*.cmd.1", "", "", 0, false},
		{"obj.cm>.1", "", "", 0, false},
		{"*.cmd.1", "", "", 0, false},
		{"obj.>.1", "", "", 0, false},
		{"o j.cmd.1", "", "", 0, false},
		{"obj.c\td.1", "", "", 0, false},
		{"obj.c\x00d.1", "", "", 0, false},
		{"o\xffj.cmd.1", "", "", 0, false},
		{"obj.c\u00a0d.1", "", "", 0, false},
		{long + "o.c.3", "", "", 0, false},
	}
	for _, tt := range tests {
		object, cmd, id, ok := ParseAddr(tt.s)
		if object != tt.object || cmd != tt.cmd || id != tt.id || ok != tt.ok {
			t.Errorf("ParseAddr(%q) = %q, %q, %d, %v; want %q, %q, %d, %v",
				tt.s, object, cmd, id, ok, tt.object, tt.cmd, tt.id, tt.ok)
		}
	}
}

func TestAppendAddrRoundTrip(t *testing.T) {
	tests := []struct {
		object, cmd string
		id          int64
	}{
		{"obj", "cmd", 0},
		{"obj", "cmd", 1},
		{"obj", "cmd", -1},
		{"obj", "cmd", math.MaxInt64},
		{"obj", "cmd", math.MinInt64},
		{"héllo", "通知", 123456789},
		{strings.Repeat("o", MaxNameLen), strings.Repeat("c", MaxNameLen), -987654321},
	}
	for _, tt := range tests {
		for _, k := range []Kind{KindPub, KindRPC} {
			s := Subjects{Prefix: "a.b"}
			prefix := s.Gateway(k)
			dst := AppendAddr([]byte(prefix), tt.object, tt.cmd, tt.id)
			if !strings.HasPrefix(string(dst), prefix) {
				t.Fatalf("AppendAddr overwrote dst: %q", dst)
			}
			tail := string(dst[len(prefix):])
			object, cmd, id, ok := ParseAddr(tail)
			if !ok || object != tt.object || cmd != tt.cmd || id != tt.id {
				t.Errorf("ParseAddr(AppendAddr(%q, %q, %d)) = %q, %q, %d, %v", tt.object, tt.cmd, tt.id, object, cmd, id, ok)
			}
			if toks := strings.Split(string(dst), "."); slices.Contains(toks, "") {
				t.Errorf("subject %q has an empty token", dst)
			}
		}
	}
}

func TestKindString(t *testing.T) {
	tests := []struct {
		k    Kind
		want string
	}{
		{KindPub, "pub"},
		{KindRPC, "rpc"},
	}
	for _, tt := range tests {
		if got := tt.k.String(); got != tt.want {
			t.Errorf("Kind(%d).String() = %q, want %q", tt.k, got, tt.want)
		}
	}
}

func TestSubjectsLayout(t *testing.T) {
	addr := func(prefix string) string { return string(AppendAddr([]byte(prefix), "obj", "cmd", -7)) }
	tests := []struct {
		got, want string
	}{
		{Subjects{DefaultPrefix}.Gateway(KindPub), "notifier.pub."},
		{Subjects{DefaultPrefix}.Gateway(KindRPC), "notifier.rpc."},
		{Subjects{DefaultPrefix}.Fan(), "notifier.fan."},
		{Subjects{DefaultPrefix}.GatewayQueue(), "notifier.gateway"},
		{addr(Subjects{DefaultPrefix}.Gateway(KindPub)), "notifier.pub.obj.cmd.-7"},
		{addr(Subjects{DefaultPrefix}.Gateway(KindRPC)), "notifier.rpc.obj.cmd.-7"},
		{Subjects{DefaultPrefix}.NodeData("n1", KindPub), "notifier.node.n1.pub."},
		{Subjects{DefaultPrefix}.NodeData("n1", KindRPC), "notifier.node.n1.rpc."},
		{addr(Subjects{DefaultPrefix}.NodeData("n1", KindPub)), "notifier.node.n1.pub.obj.cmd.-7"},
		{addr(Subjects{DefaultPrefix}.NodeData("n1", KindRPC)), "notifier.node.n1.rpc.obj.cmd.-7"},
		{Subjects{DefaultPrefix}.NodeDir("n1"), "notifier.node.n1.dir"},
		{Subjects{DefaultPrefix}.NodeAck("n1"), "notifier.node.n1.ack"},
		{Subjects{DefaultPrefix}.NodeProbe("n1"), "notifier.node.n1.probe"},
		{Subjects{DefaultPrefix}.NodeRegistrations("n1"), "notifier.node.n1.registrations"},
		{Subjects{DefaultPrefix}.Ann("n1"), "notifier.dir.ann.n1"},
		{Subjects{DefaultPrefix}.AnnAll(), "notifier.dir.ann.*"},
		{Subjects{DefaultPrefix}.Members(), "_NOTIFIER.notifier.members"},
		{Subjects{"a.b"}.Gateway(KindPub), "a.b.pub."},
		{Subjects{"a.b"}.NodeData("n1", KindRPC), "a.b.node.n1.rpc."},
		{Subjects{"a.b"}.NodeDir("n1"), "a.b.node.n1.dir"},
		{Subjects{"a.b"}.NodeAck("n1"), "a.b.node.n1.ack"},
		{Subjects{"a.b"}.Ann("n1"), "a.b.dir.ann.n1"},
		{Subjects{"a.b"}.AnnAll(), "a.b.dir.ann.*"},
		{Subjects{"a.b"}.Members(), "_NOTIFIER.a.b.members"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got subject %q, want %q", tt.got, tt.want)
		}
	}
}

// docLine matches a subject line of the layout listed in doc.go.
var docLine = regexp.MustCompile(`^//\t(\S+)\s`)

// TestSubjectsMatchDoc keeps the subject list in doc.go and the Subjects
// methods in step: every documented subject is built by a method and every
// method's subject is documented.
func TestSubjectsMatchDoc(t *testing.T) {
	src, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	fill := strings.NewReplacer("<node>", "N1", "<object>", "obj", "<cmd>", "cmd", "<id>", "-7")
	var documented []string
	for line := range strings.SplitSeq(string(src), "\n") {
		if m := docLine.FindStringSubmatch(line); m != nil {
			documented = append(documented, fill.Replace(m[1]))
		}
	}
	s := Subjects{Prefix: DefaultPrefix}
	addr := func(prefix string) string { return string(AppendAddr([]byte(prefix), "obj", "cmd", -7)) }
	built := []string{
		addr(s.Gateway(KindPub)),
		addr(s.Gateway(KindRPC)),
		addr(s.NodeData("N1", KindPub)),
		addr(s.NodeData("N1", KindRPC)),
		addr(s.Fan()),
		s.NodeDir("N1"),
		s.NodeAck("N1"),
		s.NodeProbe("N1"),
		s.NodeRegistrations("N1"),
		s.Ann("N1"),
		s.Members(),
	}
	slices.Sort(documented)
	slices.Sort(built)
	if !slices.Equal(documented, built) {
		t.Errorf("doc.go lists\n\t%s\nthe Subjects methods build\n\t%s",
			strings.Join(documented, "\n\t"), strings.Join(built, "\n\t"))
	}
	// AnnAll is Ann with the node token replaced by the wildcard.
	if want := strings.TrimSuffix(s.Ann("N1"), "N1") + "*"; s.AnnAll() != want {
		t.Errorf("AnnAll() = %q, want %q", s.AnnAll(), want)
	}
}

// TestAppendSubjects: the allocation-free forms build what the string
// methods and AppendAddr build, and AnnNode inverts Ann.
func TestAppendSubjects(t *testing.T) {
	for _, s := range []Subjects{{DefaultPrefix}, {"a.b"}} {
		for _, k := range []Kind{KindPub, KindRPC} {
			got := string(s.AppendNodeData([]byte("x"), "n1", k, "obj", "cmd", -7))
			if want := "x" + string(AppendAddr([]byte(s.NodeData("n1", k)), "obj", "cmd", -7)); got != want {
				t.Errorf("AppendNodeData = %q, want %q", got, want)
			}
		}
		if got, want := string(s.AppendFan(nil, "obj", "cmd", 3)), string(AppendAddr([]byte(s.Fan()), "obj", "cmd", 3)); got != want {
			t.Errorf("AppendFan = %q, want %q", got, want)
		}
		if node, ok := s.AnnNode(s.Ann("n1")); !ok || node != "n1" {
			t.Errorf("AnnNode(%q) = %q, %v", s.Ann("n1"), node, ok)
		}
		for _, bad := range []string{s.Prefix + ".dir.ann.", s.Prefix + ".dir.ann.a.b", s.NodeDir("n1"), "other.dir.ann.n1"} {
			if node, ok := s.AnnNode(bad); ok {
				t.Errorf("AnnNode(%q) = %q, true; want false", bad, node)
			}
		}
	}
	s := Subjects{DefaultPrefix}
	buf := make([]byte, 0, 128)
	if a := testing.AllocsPerRun(100, func() { buf = s.AppendNodeData(buf[:0], "n1", KindRPC, "obj", "cmd", 12345) }); a != 0 {
		t.Errorf("AppendNodeData allocates %v times", a)
	}
}
