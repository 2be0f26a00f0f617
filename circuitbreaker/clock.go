package circuitbreaker

import (
	"sync"
	"sync/atomic"
	"time"
)

// clock is a coarse monotonic clock that lets the hot path read the time
// with one atomic load instead of a call into the operating system.
//
// While it is in use, a timer refreshes now every res. The timer is not a
// goroutine: it exists only as a runtime timer between firings, and it
// stops on its own after idleTicks firings; the next reader that finds it
// stopped reads the real clock once and restarts it. An idle breaker
// therefore costs nothing, a busy one costs one timer firing per res, and
// readers see a value at most res (plus timer latency) behind the real
// clock. Breakers of a [Group] share one clock.
//
// All values are nanoseconds since base. Inside a testing/synctest bubble
// the timer and time.Since run on the bubble's fake time.
type clock struct {
	now atomic.Int64 // coarse time; stopped (-1) while the ticker is off
	_   [56]byte     // keep the hot word alone on its cache line

	base time.Time
	res  int64 // nanoseconds between refreshes

	mu    sync.Mutex // serialises starting and stopping the ticker
	timer *time.Timer
	ticks int
}

const (
	stopped   = -1
	idleTicks = 64 // firings before the ticker stops and waits for a reader
)

func newClock(res time.Duration) *clock {
	c := &clock{base: time.Now(), res: int64(res)}
	c.now.Store(stopped)
	return c
}

// coarse returns the time, at most res behind the real clock. It costs one
// atomic load while the ticker runs.
func (c *clock) coarse() int64 {
	if n := c.now.Load(); n >= 0 {
		return n
	}
	return c.wake()
}

// real returns the exact time.
func (c *clock) real() int64 { return int64(time.Since(c.base)) }

// at converts a clock reading to a time.Time.
func (c *clock) at(n int64) time.Time { return c.base.Add(time.Duration(n)) }

// wake reads the real clock, publishes it, and starts the ticker if it is
// stopped.
func (c *clock) wake() int64 {
	c.mu.Lock()
	n := c.real()
	if c.now.Load() == stopped {
		c.ticks = 0
		if c.timer == nil {
			c.timer = time.AfterFunc(time.Duration(c.res), c.tick)
		} else {
			c.timer.Reset(time.Duration(c.res))
		}
	}
	c.now.Store(n)
	c.mu.Unlock()
	return n
}

func (c *clock) tick() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.now.Load() == stopped {
		return // stale firing
	}
	c.ticks++
	if c.ticks >= idleTicks {
		c.now.Store(stopped)
		return
	}
	c.now.Store(c.real())
	c.timer.Reset(time.Duration(c.res))
}
