// Package redact hides the credentials in NATS server URLs, for logs,
// errors and printed commands: the library and the notifier command share
// one rule.
package redact

import "strings"

// Mask replaces a secret.
const Mask = "xxxxx"

// URLs returns urls, a comma-separated list of NATS server URLs, with the
// credentials of each replaced by Mask: the password of user:password (the
// user name stays), or the whole user part when it is alone (a token or an
// nkey). It works on the text, so a URL that does not parse is redacted
// too.
func URLs(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		parts[i] = URL(p)
	}
	return strings.Join(parts, ",")
}

// URL is URLs for one URL.
func URL(u string) string {
	start, at := UserInfo(u)
	if at < 0 {
		return u
	}
	user := u[start:at]
	if name, _, ok := strings.Cut(user, ":"); ok {
		return u[:start] + name + ":" + Mask + u[at:]
	}
	return u[:start] + Mask + u[at:]
}

// UserInfo returns where the user information of u starts and the index of
// the '@' that ends it, or at = -1 when u has none.
func UserInfo(u string) (start, at int) {
	if i := strings.Index(u, "://"); i >= 0 {
		start = i + len("://")
	}
	end := len(u)
	if i := strings.IndexAny(u[start:], "/?#"); i >= 0 {
		end = start + i
	}
	at = strings.LastIndexByte(u[start:end], '@')
	if at < 0 {
		return start, -1
	}
	return start, start + at
}
