package pubsub

import (
	"strings"
	"unicode/utf8"
)

// Topics are NATS-style hierarchical names: tokens separated by dots, such
// as "orders.eu.created". A token is a non-empty run of printable
// characters other than '.', '*' and '>'; whitespace and control
// characters are not allowed anywhere.
//
// A subscription pattern is a topic in which a whole token may be a
// wildcard: "*" matches exactly one token and ">", allowed only as the last
// token, matches one or more tokens. "orders.*" matches "orders.created"
// but not "orders.eu.created"; "orders.>" matches both, but not "orders".

// ValidateTopic reports whether topic is a valid topic to publish to. It
// returns nil or a [*TopicError] (which matches [ErrInvalidTopic]).
func ValidateTopic(topic string) error {
	return validate(topic, false)
}

// ValidatePattern reports whether pattern is a valid subscription pattern.
// Every valid topic is also a valid pattern (matching only itself). It
// returns nil or a [*TopicError] (which matches [ErrInvalidTopic]).
func ValidatePattern(pattern string) error {
	return validate(pattern, true)
}

func validate(s string, pattern bool) error {
	if s == "" {
		return &TopicError{Topic: s, Reason: "empty"}
	}
	if !utf8.ValidString(s) {
		return &TopicError{Topic: s, Reason: "not valid UTF-8"}
	}
	start := 0
	for i := 0; i <= len(s); i++ {
		if i < len(s) && s[i] != '.' {
			c := s[i]
			if c <= ' ' || c == 0x7f {
				return &TopicError{Topic: s, Reason: "contains whitespace or a control character"}
			}
			continue
		}
		tok := s[start:i]
		last := i == len(s)
		start = i + 1
		switch {
		case tok == "":
			return &TopicError{Topic: s, Reason: "empty token"}
		case tok == "*" || tok == ">":
			if !pattern {
				return &TopicError{Topic: s, Reason: "wildcard " + tok + " in a publish topic"}
			}
			if tok == ">" && !last {
				return &TopicError{Topic: s, Reason: "'>' must be the last token"}
			}
		case strings.ContainsAny(tok, "*>"):
			return &TopicError{Topic: s, Reason: "'*' or '>' inside token " + tok}
		}
	}
	return nil
}

// Match reports whether topic matches the subscription pattern. Both are
// assumed valid (see [ValidateTopic] and [ValidatePattern]); Match does not
// allocate.
func Match(pattern, topic string) bool {
	for {
		ptok, prest, pmore := strings.Cut(pattern, ".")
		if ptok == ">" {
			return topic != ""
		}
		if topic == "" {
			return false
		}
		ttok, trest, tmore := strings.Cut(topic, ".")
		if ptok != "*" && ptok != ttok {
			return false
		}
		if !pmore || !tmore {
			return pmore == tmore
		}
		pattern, topic = prest, trest
	}
}
