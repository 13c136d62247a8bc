package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/natsnotifier/notifier/bus"
)

// cmdFlags is the flag set of one command with its help text.
type cmdFlags struct {
	*flag.FlagSet
	synopsis string // "[flags]" and the like, after "notifier <name>"
	doc      string // paragraphs between the synopsis and the flags
	footer   string // paragraphs after the flags
}

func newFlags(name, synopsis, doc string) *cmdFlags {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // parse prints nothing; parse reports errors itself
	fs.Usage = func() {}
	return &cmdFlags{FlagSet: fs, synopsis: synopsis, doc: doc}
}

// parse parses args. When the command should not go on, ok is false and code
// is the exit code: 0 after --help (usage on stdout), 2 after a bad flag or an
// unexpected argument (message and usage on stderr).
func (f *cmdFlags) parse(args []string, stdout, stderr io.Writer) (code int, ok bool) {
	err := f.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		f.usage(stdout)
		return exitOK, false
	case err != nil:
		return f.fail(stderr, "%v", err), false
	case f.NArg() > 0:
		return f.fail(stderr, "unexpected argument %q (every input is a flag)", f.Arg(0)), false
	}
	return exitOK, true
}

// fail reports a bad command line and returns exitUsage.
func (f *cmdFlags) fail(stderr io.Writer, format string, args ...any) int {
	fmt.Fprintf(stderr, "notifier %s: %s\n\n", f.Name(), fmt.Sprintf(format, args...))
	f.usage(stderr)
	return exitUsage
}

func (f *cmdFlags) usage(w io.Writer) {
	fmt.Fprintf(w, "Usage: notifier %s %s\n\n%s\nFlags:\n", f.Name(), f.synopsis, f.doc)
	f.SetOutput(w)
	f.PrintDefaults()
	f.SetOutput(io.Discard)
	fmt.Fprint(w, f.footer)
}

// isSet reports whether the flag name was given on the command line.
func (f *cmdFlags) isSet(name string) bool {
	set := false
	f.Visit(func(fl *flag.Flag) {
		if fl.Name == name {
			set = true
		}
	})
	return set
}

// int64Flag is an int64 flag that also accepts hex (0x...) and, for masks,
// unsigned 64-bit values such as 0xffffffffffffffff (that is, -1).
type int64Flag struct {
	v   int64
	set bool
}

func (f *int64Flag) String() string {
	if f == nil {
		return "0"
	}
	return strconv.FormatInt(f.v, 10)
}

func (f *int64Flag) Set(s string) error {
	v, err := strconv.ParseInt(s, 0, 64)
	if err != nil {
		u, uerr := strconv.ParseUint(s, 0, 64)
		if uerr != nil {
			return errors.New("not a 64-bit integer (decimal, or 0x hex)")
		}
		v = int64(u)
	}
	f.v, f.set = v, true
	return nil
}

// checkName checks an object or cmd flag before anything connects.
func checkName(flagName, v string) error {
	switch {
	case v == "":
		return fmt.Errorf("--%s is required", flagName)
	case !bus.ValidName(v):
		return fmt.Errorf("--%s %q: must be one NATS subject token: no '.', '*', '>', spaces or control characters, at most %d bytes", flagName, v, bus.MaxNameLen)
	}
	return nil
}

// parseJSONArgs decodes the --json flag into the value to publish: nil when
// empty, and integers as int64 (not float64) so that Go receivers can decode
// them into integer types.
func parseJSONArgs(s string) (any, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("invalid JSON: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("invalid JSON: more than one value")
	}
	return numbers(v), nil
}

// numbers replaces every json.Number in v by an int64, a uint64 or a float64.
func numbers(v any) any {
	switch x := v.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i
		}
		if u, err := strconv.ParseUint(string(x), 10, 64); err == nil {
			return u
		}
		f, _ := x.Float64() // ±Inf beyond float64's range
		return f
	case map[string]any:
		for k, e := range x {
			x[k] = numbers(e)
		}
	case []any:
		for i, e := range x {
			x[i] = numbers(e)
		}
	}
	return v
}

// nameFlags are the --object and --cmd flags of the commands that address
// the bus.
type nameFlags struct{ object, cmd *string }

// addNameFlags adds --object and --cmd; what says what the command does to
// them ("publish to", "call", "watch").
func addNameFlags(f *cmdFlags, what string) nameFlags {
	return nameFlags{
		object: f.String("object", "", "`object` (service name) to "+what+" (required)"),
		cmd:    f.String("cmd", "", "`cmd` to "+what+" (required)"),
	}
}

// check reports the first invalid name.
func (nf nameFlags) check() error {
	if err := checkName("object", *nf.object); err != nil {
		return err
	}
	return checkName("cmd", *nf.cmd)
}

// maxJSONArgs bounds the JSON arguments read from a file or stdin: far
// above any server's max payload (1 MiB by default, 64 MiB at most).
const maxJSONArgs = 64 << 20

// targetFlags address one destination and its arguments: --object, --cmd,
// a required --id, and --json or --json-file, for pub and rpc.
type targetFlags struct {
	nameFlags
	id       int64Flag
	json     *string
	jsonFile *string
}

func addTargetFlags(f *cmdFlags, what, jsonHelp string) *targetFlags {
	t := &targetFlags{nameFlags: addNameFlags(f, what)}
	f.Var(&t.id, "id", "destination `id`, a 64-bit integer (required)")
	t.json = f.String("json", "", jsonHelp+"; - reads them from stdin")
	t.jsonFile = f.String("json-file", "", "read the arguments as JSON from `file` (- for stdin), for arguments too long for a command line")
	return t
}

// args checks the names and the id, and returns the decoded arguments of
// --json or --json-file, read from stdin for "-".
func (t *targetFlags) args(f *cmdFlags, stdin io.Reader) (any, error) {
	if err := t.check(); err != nil {
		return nil, err
	}
	if !t.id.set {
		return nil, errors.New("--id is required")
	}
	if f.isSet("json") && f.isSet("json-file") {
		return nil, errors.New("give --json or --json-file, not both")
	}
	switch {
	case f.isSet("json-file"):
		return readJSONArgs("--json-file "+*t.jsonFile, *t.jsonFile, stdin)
	case *t.json == "-":
		return readJSONArgs("--json - (stdin)", "-", stdin)
	}
	v, err := parseJSONArgs(*t.json)
	if err != nil {
		return nil, fmt.Errorf("--json: %w", err)
	}
	return v, nil
}

// readJSONArgs reads JSON arguments from path, or stdin for "-", at most
// maxJSONArgs bytes.
func readJSONArgs(what, path string, stdin io.Reader) (any, error) {
	r := stdin
	if path != "-" {
		if path == "" {
			return nil, errors.New("--json-file is blank")
		}
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, errors.Unwrap(err))
		}
		defer f.Close()
		r = f
	} else if r == nil {
		return nil, fmt.Errorf("%s: no standard input", what)
	}
	data, err := io.ReadAll(io.LimitReader(r, maxJSONArgs+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if len(data) > maxJSONArgs {
		return nil, fmt.Errorf("%s: more than %d MiB", what, maxJSONArgs>>20)
	}
	v, err := parseJSONArgs(string(data))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return v, nil
}
