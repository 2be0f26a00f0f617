package pubsub_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/distkit/distkit/pubsub"
)

func TestValidateTopic(t *testing.T) {
	for _, tc := range []struct {
		s              string
		topic, pattern bool
	}{
		{"orders", true, true},
		{"orders.eu.created", true, true},
		{"ordres-v2.ü_x", true, true},
		{"orders.*", false, true},
		{"orders.>", false, true},
		{"*.created", false, true},
		{">", false, true},
		{"*", false, true},
		{"", false, false},
		{".", false, false},
		{"orders.", false, false},
		{".orders", false, false},
		{"a..b", false, false},
		{"a.>.b", false, false},
		{"a*", false, false},
		{"a.b>", false, false},
		{"a b", false, false},
		{"a\nb", false, false},
		{"a\x7fb", false, false},
		{"\xff", false, false},
	} {
		t.Run(tc.s, func(t *testing.T) {
			terr, perr := pubsub.ValidateTopic(tc.s), pubsub.ValidatePattern(tc.s)
			require.Equal(t, tc.topic, terr == nil, "ValidateTopic: %v", terr)
			require.Equal(t, tc.pattern, perr == nil, "ValidatePattern: %v", perr)
			for _, err := range []error{terr, perr} {
				if err != nil {
					var te *pubsub.TopicError
					require.ErrorAs(t, err, &te)
					require.ErrorIs(t, err, pubsub.ErrInvalidTopic)
				}
			}
		})
	}
}

func TestMatch(t *testing.T) {
	for _, tc := range []struct {
		pattern, topic string
		want           bool
	}{
		{"a", "a", true},
		{"a", "b", false},
		{"a.b", "a.b", true},
		{"a.b", "a", false},
		{"a", "a.b", false},
		{"a.*", "a.b", true},
		{"a.*", "a", false},
		{"a.*", "a.b.c", false},
		{"*.b", "a.b", true},
		{"a.>", "a.b", true},
		{"a.>", "a.b.c", true},
		{"a.>", "a", false},
		{">", "a", true},
		{">", "a.b.c", true},
		{"*.*", "a.b", true},
		{"*.>", "a", false},
		{"ab", "a", false},
		{"a", "ab", false},
	} {
		require.Equal(t, tc.want, pubsub.Match(tc.pattern, tc.topic), "Match(%q, %q)", tc.pattern, tc.topic)
	}
}

// matchModel is the obvious token-by-token matcher.
func matchModel(pattern, topic string) bool {
	p, tt := strings.Split(pattern, "."), strings.Split(topic, ".")
	for i, tok := range p {
		if tok == ">" {
			return len(tt) > i
		}
		if i >= len(tt) || (tok != "*" && tok != tt[i]) {
			return false
		}
	}
	return len(p) == len(tt)
}

func FuzzMatch(f *testing.F) {
	for _, s := range [][2]string{{"a.*", "a.b"}, {"a.>", "a.b.c"}, {">", "x"}, {"*.b", "a.b"}, {"a..b", "a.b"}, {"a.b", "a.b"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, topic string) {
		perr, terr := pubsub.ValidatePattern(pattern), pubsub.ValidateTopic(topic)
		if terr == nil && pubsub.ValidatePattern(topic) != nil {
			t.Fatalf("valid topic %q is not a valid pattern", topic)
		}
		for _, err := range []error{perr, terr} {
			if err != nil && !errors.Is(err, pubsub.ErrInvalidTopic) {
				t.Fatalf("error %v does not match ErrInvalidTopic", err)
			}
		}
		if perr != nil || terr != nil {
			return
		}
		if got, want := pubsub.Match(pattern, topic), matchModel(pattern, topic); got != want {
			t.Fatalf("Match(%q, %q) = %v, model says %v", pattern, topic, got, want)
		}
		if !pubsub.Match(topic, topic) || !pubsub.Match(">", topic) {
			t.Fatalf("topic %q does not match itself or >", topic)
		}
	})
}
