package notifier

import (
	"cmp"
	"net/url"
	"slices"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/natsnotifier/notifier/internal/redact"
)

// connectSecrets returns every secret that a failed connection could put
// into an error: the passwords and tokens in urls, raw and unescaped, and
// those given as nats options (nats.UserInfo, nats.Token).
func connectSecrets(urls string, opts []nats.Option) []string {
	var secrets []string
	for _, u := range strings.Split(urls, ",") {
		start, at := redact.UserInfo(strings.TrimSpace(u))
		if at < 0 {
			continue
		}
		user := strings.TrimSpace(u)[start:at]
		if _, pw, ok := strings.Cut(user, ":"); ok {
			user = pw // the name is no secret
		}
		secrets = append(secrets, user)
		if dec, err := url.PathUnescape(user); err == nil {
			secrets = append(secrets, dec)
		}
	}
	o := nats.GetDefaultOptions()
	for _, opt := range opts {
		if opt != nil {
			_ = opt(&o) // only to read what it sets; nats.Connect reports errors
		}
	}
	secrets = append(secrets, o.Password, o.Token)
	secrets = slices.DeleteFunc(secrets, func(s string) bool { return s == "" })
	// Longest first, so that a secret containing another is replaced whole.
	slices.SortFunc(secrets, func(a, b string) int { return cmp.Compare(len(b), len(a)) })
	return slices.Compact(secrets)
}

// scrub replaces every secret in s.
func scrub(s string, secrets []string) string {
	for _, sec := range secrets {
		s = strings.ReplaceAll(s, sec, redact.Mask)
	}
	return s
}

// redactedError is an error whose message has its secrets replaced; Unwrap
// gives the original error, for errors.Is and errors.As.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// connectError is the error of Connect when nats.Connect fails: it names the
// servers with their credentials redacted, and carries no secret from urls
// or opts in its message.
func connectError(urls string, opts []nats.Option, err error) error {
	secrets := connectSecrets(urls, opts)
	msg := "notifier: connect " + redact.URLs(urls) + ": " + err.Error()
	return &redactedError{msg: scrub(msg, secrets), err: err}
}
