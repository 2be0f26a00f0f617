package heartbeat_test

import (
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/distkit/distkit/heartbeat"
	"github.com/distkit/distkit/internal/simnet"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Three monitors; m3 is cut off from everything while n1 crashes. m1 and
// m2 form a majority and declare n1 dead, saying who agreed. m3 alone
// suspects everyone but declares no one dead; once it rejoins it learns
// the verdict and sees the healthy node again.
func TestQuorumNeedsAMajorityAndSaysWhoAgreed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 1, simnet.LinkConfig{MinDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond})
		defer c.stop()
		mons := []string{"m1", "m2", "m3"}
		peers := []heartbeat.Peer{{ID: "n1"}, {ID: "n2"}}
		for _, a := range mons {
			c.monitor(a, heartbeat.MonitorConfig{Peers: peers, Quorum: slices.DeleteFunc(slices.Clone(mons), func(s string) bool { return s == a })})
		}
		for _, n := range []string{"n1", "n2"} {
			c.node(n, heartbeat.NodeConfig{Targets: mons})
		}
		isolate := func(on bool) {
			for _, a := range []string{"m1", "m2", "n1", "n2"} {
				if on {
					c.net.Cut("m3", a)
					c.net.Cut(a, "m3")
				} else {
					c.net.Uncut("m3", a)
					c.net.Uncut(a, "m3")
				}
			}
		}
		time.Sleep(5 * time.Second)
		isolate(true)
		time.Sleep(5 * time.Second)
		c.nodes["n1"].kill()
		time.Sleep(15 * time.Second)

		for _, a := range []string{"m1", "m2"} {
			st, _ := c.mons[a].m.Peer("n1")
			assert.Equal(t, heartbeat.Dead, st.State, a)
			assert.Equal(t, []string{"m1", "m2"}, st.Votes, a)
			tr, ok := c.mons[a].rec.firstTo("n1", heartbeat.Dead, time.Time{})
			require.True(t, ok)
			assert.Equal(t, []string{"m1", "m2"}, tr.Agreed, "%s: the transition says who agreed", a)
		}
		for _, n := range []string{"n1", "n2"} {
			st, _ := c.mons["m3"].m.Peer(n)
			assert.Equal(t, heartbeat.Suspect, st.State, "isolated m3 must not declare %s dead alone", n)
			assert.Equal(t, []string{"m3"}, st.Votes)
		}

		isolate(false)
		time.Sleep(3 * time.Second)
		st, _ := c.mons["m3"].m.Peer("n1")
		assert.Equal(t, heartbeat.Dead, st.State)
		assert.Equal(t, []string{"m1", "m2", "m3"}, st.Votes)
		st, _ = c.mons["m3"].m.Peer("n2")
		assert.Equal(t, heartbeat.Alive, st.State)
		assert.Empty(t, st.Votes)
		for _, a := range mons {
			assert.Empty(t, c.mons[a].rec.ofTo("n2", heartbeat.Dead), "%s declared the healthy node dead", a)
			checkTransitions(t, c.mons[a].rec.all())
		}
	})
}
