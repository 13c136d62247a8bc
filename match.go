package notifier

import "github.com/natsnotifier/notifier/match"

// Match is an id pattern: an id matches when id&Mask == Value (two's
// complement, so negative ids work). Match{} matches every id. A Value with
// bits outside Mask never matches; it is accepted all the same.
type Match struct{ Mask, Value int64 }

// Exact matches exactly one id.
func Exact(id int64) Match { return Match{Mask: -1, Value: id} }

// Matches reports whether id matches m.
func (m Match) Matches(id int64) bool { return id&m.Mask == m.Value }

func (m Match) pattern() match.Pattern { return match.Pattern(m) }
