package heartbeat

import (
	"fmt"
	"math"
	"time"
)

// A Detector judges one peer's silence. A [Monitor] keeps one per peer
// (and a [Node] one per acknowledged path), feeds it every fresh
// heartbeat and asks it, every check interval, how suspicious the
// current silence is.
//
// Implementations need not be safe for concurrent use: the monitor
// serialises calls. Times come from the monitor's monotonic clock, with
// any local pause the monitor detected already taken out, and never go
// backwards between calls. A detector that has seen no heartbeat yet
// reports (0, false).
type Detector interface {
	// Heartbeat records that a heartbeat arrived at now.
	Heartbeat(now time.Time)
	// Suspicion reports the detector's suspicion level at now, on its own
	// scale (φ for the accrual detectors, elapsed/timeout for
	// [Deadline]), and whether it has crossed the detector's threshold,
	// in which case the monitor marks the peer [Suspect].
	Suspicion(now time.Time) (level float64, suspect bool)
}

// A DetectorFactory makes one [Detector] per peer. The monitor passes the
// peer's heartbeat interval (announced in its heartbeats, or the
// monitor's own Interval in pull mode), so configuration fields left at
// zero can default relative to it.
//
// [PhiAccrualConfig], [ExponentialConfig] and [DeadlineConfig] are
// factories; so is any type of yours with this method.
type DetectorFactory interface {
	// NewDetector returns a detector for a peer that heartbeats every
	// interval, or an error wrapping [ErrInvalidConfig].
	NewDetector(interval time.Duration) (Detector, error)
}

var (
	_ DetectorFactory = PhiAccrualConfig{}
	_ DetectorFactory = ExponentialConfig{}
	_ DetectorFactory = DeadlineConfig{}
	_ Detector        = (*PhiAccrual)(nil)
	_ Detector        = (*Exponential)(nil)
	_ Detector        = (*Deadline)(nil)
)

// Defaults shared by the accrual detectors (Akka's and Cassandra's).
const (
	// DefaultThreshold is the φ at which a peer is suspected: Akka's
	// threshold and Cassandra's phi_convict_threshold.
	DefaultThreshold = 8.0
	// DefaultMaxSamples is the number of inter-arrival intervals kept.
	DefaultMaxSamples = 1000
)

// PhiAccrualConfig configures the φ accrual failure detector of
// Hayashibara et al. (2004) as Akka implements it. Zero fields take
// Akka's defaults, expressed relative to the heartbeat interval so that
// they are exactly Akka's at its 1 s interval.
//
// # Arithmetic
//
// The detector keeps the last MaxSamples inter-arrival intervals and
// their mean μ and standard deviation σ (at least MinStdDev). After a
// silence of t since the last heartbeat it computes
//
//	φ(t) = -log10(1 - F(t)),  F = normal CDF with mean μ + AcceptablePause, deviation σ
//
// (with Akka's logistic approximation of F). φ = 8 means a 1e-8 chance
// that a heartbeat this late would still come. φ reaches Threshold when
// t ≈ μ + AcceptablePause + k·σ, with k ≈ 5.2 for a threshold of 8
// (k ≈ 3.4 for 4, 6.1 for 10). With the defaults and a steady 1 s
// heartbeat (σ clamped to 100 ms) a crashed peer is suspected about
// 1 + 3 + 0.52 = 4.5 s after its last heartbeat; larger jitter raises σ
// and so the detection time, which is the point: the detector adapts to
// what the network has shown.
type PhiAccrualConfig struct {
	// Threshold is the φ at or above which the peer is suspected.
	// Raising it lowers false positives and slows detection. 0 means
	// [DefaultThreshold] (8.0).
	Threshold float64
	// MaxSamples is how many recent intervals the statistics cover; each
	// costs 4 bytes per peer. 0 means [DefaultMaxSamples] (1000).
	MaxSamples int
	// MinStdDev is a floor on σ, so a very regular heartbeat does not
	// make the detector trigger on a few milliseconds of lateness.
	// 0 means interval/10 (Akka: 100 ms).
	MinStdDev time.Duration
	// AcceptablePause is added to the mean: the silence (GC pause,
	// dropped heartbeats) tolerated before φ starts to climb steeply.
	// 0 means 3 × interval (Akka: 3 s).
	AcceptablePause time.Duration
	// FirstHeartbeatEstimate seeds the statistics before real intervals
	// arrive, as two samples at ±25 %. 0 means the interval (Akka: 1 s).
	FirstHeartbeatEstimate time.Duration
}

// NewDetector implements [DetectorFactory]; it is [NewPhiAccrual].
func (c PhiAccrualConfig) NewDetector(interval time.Duration) (Detector, error) {
	return NewPhiAccrual(c, interval)
}

// NewPhiAccrual returns a φ accrual detector for a peer heartbeating every
// interval, or an error wrapping [ErrInvalidConfig] naming the bad field.
func NewPhiAccrual(c PhiAccrualConfig, interval time.Duration) (*PhiAccrual, error) {
	if interval <= 0 {
		return nil, fmt.Errorf("%w: detector interval %v must be positive", ErrInvalidConfig, interval)
	}
	if err := checkThreshold("PhiAccrualConfig", c.Threshold); err != nil {
		return nil, err
	}
	if c.MaxSamples < 0 || c.MinStdDev < 0 || c.AcceptablePause < 0 || c.FirstHeartbeatEstimate < 0 {
		return nil, fmt.Errorf("%w: PhiAccrualConfig fields must not be negative: %+v", ErrInvalidConfig, c)
	}
	if c.Threshold == 0 {
		c.Threshold = DefaultThreshold
	}
	if c.MaxSamples == 0 {
		c.MaxSamples = DefaultMaxSamples
	}
	if c.MaxSamples < 2 {
		return nil, fmt.Errorf("%w: PhiAccrualConfig.MaxSamples %d must be at least 2", ErrInvalidConfig, c.MaxSamples)
	}
	if c.MinStdDev == 0 {
		c.MinStdDev = interval / 10
		if c.MinStdDev == 0 {
			c.MinStdDev = 1
		}
	}
	if c.AcceptablePause == 0 {
		c.AcceptablePause = 3 * interval
	}
	if c.FirstHeartbeatEstimate == 0 {
		c.FirstHeartbeatEstimate = interval
	}
	return &PhiAccrual{
		threshold: c.Threshold,
		// φ = log10(1 + e^z) ≥ threshold  ⇔  z ≥ ln(10^threshold − 1).
		zT:     math.Log(math.Pow(10, c.Threshold) - 1),
		minStd: ms(c.MinStdDev),
		pause:  ms(c.AcceptablePause),
		first:  ms(c.FirstHeartbeatEstimate),
		hist:   newSamples(c.MaxSamples),
	}, nil
}

func checkThreshold(cfg string, v float64) error {
	if !(v >= 0) || math.IsInf(v, 0) {
		return fmt.Errorf("%w: %s.Threshold %v must be a positive finite number", ErrInvalidConfig, cfg, v)
	}
	return nil
}

// PhiAccrual is the φ accrual failure detector (see [PhiAccrualConfig]).
// Heartbeat and Suspicion take tens of nanoseconds and do not allocate
// once MaxSamples intervals are stored. It is not safe for concurrent
// use.
type PhiAccrual struct {
	threshold, minStd, pause, first float64 // ms
	zT                              float64 // z at which φ = threshold
	last                            time.Time
	started                         bool
	hist                            samples
	mean, std                       float64 // of hist, with pause and floor applied
}

// Heartbeat records a heartbeat at now. As in Akka, the interval that
// ends a suspicion is not added to the statistics, so one long outage
// does not blunt the detector for the next thousand heartbeats.
func (p *PhiAccrual) Heartbeat(now time.Time) {
	if !p.started {
		p.started = true
		p.last = now
		sd := p.first / 4
		p.hist.add(p.first - sd)
		p.hist.add(p.first + sd)
		p.refresh()
		return
	}
	d := now.Sub(p.last)
	if d < 0 {
		return
	}
	if p.z(ms(d)) < p.zT { // still available: learn the interval
		p.hist.add(ms(d))
		p.refresh()
	}
	p.last = now
}

// refresh caches the distribution's parameters, so that Suspicion, which
// runs far more often than Heartbeat, needs no square root.
func (p *PhiAccrual) refresh() {
	mean, std := p.hist.meanStd()
	p.mean, p.std = mean+p.pause, max(std, p.minStd)
}

// z is the exponent of Akka's logistic approximation of the normal CDF:
// 1 − F(t) = 1 / (1 + e^z).
func (p *PhiAccrual) z(t float64) float64 {
	y := (t - p.mean) / p.std
	return y * (1.5976 + 0.070566*y*y)
}

// Suspicion returns φ at now and whether it is at or above the threshold.
func (p *PhiAccrual) Suspicion(now time.Time) (float64, bool) {
	if !p.started {
		return 0, false
	}
	z := p.z(ms(now.Sub(p.last)))
	return phiOf(z), z >= p.zT
}

// Phi returns φ at now, 0 before the first heartbeat.
func (p *PhiAccrual) Phi(now time.Time) float64 {
	f, _ := p.Suspicion(now)
	return f
}

// Stats returns the mean and standard deviation of the recorded
// intervals (before the acceptable pause and the σ floor are applied).
func (p *PhiAccrual) Stats() (mean, stdDev time.Duration) {
	m, s := p.hist.meanStd()
	return fromMS(m), fromMS(s)
}

// phi is Akka's φ for a silence of diff given the mean and standard
// deviation: -log10(1 − F(diff)) with F the logistic approximation of the
// normal CDF.
func phi(diff, mean, std float64) float64 {
	y := (diff - mean) / std
	return phiOf(y * (1.5976 + 0.070566*y*y))
}

// phiOf returns log10(1 + e^z), which is Akka's -log10(e/(1+e)) with
// e = e^-z rewritten to stay finite and exact for every z: Akka's form
// overflows to +Inf once e underflows, this one keeps growing.
func phiOf(z float64) float64 {
	// Beyond |z| = 40, e^-|z| < 5e-18 is below float64 resolution next to
	// 1, so the logarithm is exactly z (or 0): skip the transcendental
	// functions, as a healthy peer's check always can.
	switch {
	case z > 40:
		return z / math.Ln10
	case z < -40:
		return 0
	case z > 0:
		return (z + math.Log1p(math.Exp(-z))) / math.Ln10
	}
	return math.Log1p(math.Exp(z)) / math.Ln10
}

// ExponentialConfig configures Cassandra's variant of φ accrual, which
// models inter-arrival times as exponentially distributed. Zero fields
// take Cassandra's defaults, relative to the interval (Cassandra gossips
// every second).
//
// # Arithmetic
//
// With μ the mean of the last MaxSamples intervals, after a silence t
//
//	φ(t) = -log10(e^(-t/μ)) = t / (μ · ln 10)
//
// so φ reaches Threshold at t = Threshold · ln 10 · μ ≈ 18.4 μ for the
// default 8: about 18 s at a 1 s interval. The detector needs no σ, is
// cheap and very tolerant of pauses and jitter, and is correspondingly
// slow; intervals longer than MaxInterval are not recorded, so an outage
// does not stretch the mean.
type ExponentialConfig struct {
	// Threshold is the φ at or above which the peer is suspected.
	// 0 means [DefaultThreshold] (8, Cassandra's phi_convict_threshold).
	Threshold float64
	// MaxSamples is how many recent intervals the mean covers. 0 means
	// [DefaultMaxSamples] (1000, Cassandra's window).
	MaxSamples int
	// MaxInterval is the longest interval recorded. 0 means
	// 2 × interval (Cassandra: 2 s).
	MaxInterval time.Duration
	// FirstEstimate is the interval assumed before any is measured.
	// 0 means 2 × interval (Cassandra: 2 s).
	FirstEstimate time.Duration
}

// NewDetector implements [DetectorFactory]; it is [NewExponential].
func (c ExponentialConfig) NewDetector(interval time.Duration) (Detector, error) {
	return NewExponential(c, interval)
}

// NewExponential returns Cassandra's exponential detector for a peer
// heartbeating every interval, or an error wrapping [ErrInvalidConfig].
func NewExponential(c ExponentialConfig, interval time.Duration) (*Exponential, error) {
	if interval <= 0 {
		return nil, fmt.Errorf("%w: detector interval %v must be positive", ErrInvalidConfig, interval)
	}
	if err := checkThreshold("ExponentialConfig", c.Threshold); err != nil {
		return nil, err
	}
	if c.MaxSamples < 0 || c.MaxInterval < 0 || c.FirstEstimate < 0 {
		return nil, fmt.Errorf("%w: ExponentialConfig fields must not be negative: %+v", ErrInvalidConfig, c)
	}
	if c.Threshold == 0 {
		c.Threshold = DefaultThreshold
	}
	if c.MaxSamples == 0 {
		c.MaxSamples = DefaultMaxSamples
	}
	if c.MaxInterval == 0 {
		c.MaxInterval = 2 * interval
	}
	if c.FirstEstimate == 0 {
		c.FirstEstimate = 2 * interval
	}
	return &Exponential{
		threshold: c.Threshold,
		maxIv:     ms(c.MaxInterval),
		first:     ms(c.FirstEstimate),
		hist:      newSamples(c.MaxSamples),
	}, nil
}

// Exponential is Cassandra's exponential φ detector (see
// [ExponentialConfig]). It is not safe for concurrent use.
type Exponential struct {
	threshold, maxIv, first float64 // ms
	last                    time.Time
	started                 bool
	hist                    samples
}

// Heartbeat records a heartbeat at now.
func (x *Exponential) Heartbeat(now time.Time) {
	if !x.started {
		x.started = true
		x.last = now
		x.hist.add(x.first)
		return
	}
	d := now.Sub(x.last)
	if d < 0 {
		return
	}
	if v := ms(d); v <= x.maxIv {
		x.hist.add(v)
	}
	x.last = now
}

// Suspicion returns φ at now and whether it is at or above the threshold.
func (x *Exponential) Suspicion(now time.Time) (float64, bool) {
	f := x.Phi(now)
	return f, f >= x.threshold
}

// Phi returns φ at now, 0 before the first heartbeat.
func (x *Exponential) Phi(now time.Time) float64 {
	if !x.started {
		return 0
	}
	mean, _ := x.hist.meanStd()
	if mean <= 0 {
		mean = x.first
	}
	return ms(now.Sub(x.last)) / (mean * math.Ln10)
}

// DeadlineConfig configures the fixed-deadline detector.
type DeadlineConfig struct {
	// Timeout is the silence after which the peer is suspected.
	// 0 means 4 × interval, the mean silence at which φ accrual starts to
	// climb at its defaults (interval + acceptable pause).
	Timeout time.Duration
}

// NewDetector implements [DetectorFactory]; it is [NewDeadline].
func (c DeadlineConfig) NewDetector(interval time.Duration) (Detector, error) {
	return NewDeadline(c, interval)
}

// NewDeadline returns a fixed-deadline detector, or an error wrapping
// [ErrInvalidConfig].
func NewDeadline(c DeadlineConfig, interval time.Duration) (*Deadline, error) {
	if interval <= 0 {
		return nil, fmt.Errorf("%w: detector interval %v must be positive", ErrInvalidConfig, interval)
	}
	if c.Timeout < 0 {
		return nil, fmt.Errorf("%w: DeadlineConfig.Timeout %v must not be negative", ErrInvalidConfig, c.Timeout)
	}
	if c.Timeout == 0 {
		c.Timeout = 4 * interval
	}
	return &Deadline{timeout: c.Timeout}, nil
}

// Deadline suspects a peer once it has been silent for longer than a
// fixed timeout. It is predictable and needs no history, but one
// timeout cannot fit every network: short ones convict slow but healthy
// peers, long ones detect crashes late. It is not safe for concurrent
// use.
type Deadline struct {
	timeout time.Duration
	last    time.Time
	started bool
}

// Heartbeat records a heartbeat at now.
func (d *Deadline) Heartbeat(now time.Time) {
	if !d.started || now.After(d.last) {
		d.last = now
	}
	d.started = true
}

// Suspicion returns elapsed/timeout and whether the silence exceeds the
// timeout.
func (d *Deadline) Suspicion(now time.Time) (float64, bool) {
	if !d.started {
		return 0, false
	}
	e := now.Sub(d.last)
	return float64(e) / float64(d.timeout), e > d.timeout
}

// samples is a ring of the most recent intervals, in milliseconds, with
// running sums. It grows on demand up to limit. float32 storage halves
// the memory of a monitor tracking thousands of peers; the sums are
// float64 and recomputed exactly each time the ring wraps, so rounding
// never accumulates.
type samples struct {
	ring    []float32
	limit   int
	head    int // oldest sample once the ring is full
	sum, sq float64
	adds    int // replacements since the last exact recomputation
}

func newSamples(limit int) samples { return samples{limit: limit} }

func (s *samples) add(v float64) {
	f := float32(v)
	v = float64(f)
	if len(s.ring) < s.limit {
		s.ring = append(s.ring, f)
		s.sum += v
		s.sq += v * v
		return
	}
	old := float64(s.ring[s.head])
	s.ring[s.head] = f
	if s.head++; s.head == len(s.ring) {
		s.head = 0
	}
	s.sum += v - old
	s.sq += v*v - old*old
	if s.adds++; s.adds >= len(s.ring) {
		s.adds = 0
		s.sum, s.sq = 0, 0
		for _, x := range s.ring {
			s.sum += float64(x)
			s.sq += float64(x) * float64(x)
		}
	}
}

// meanStd returns the mean and population standard deviation (0, 0 when
// empty).
func (s *samples) meanStd() (mean, std float64) {
	n := float64(len(s.ring))
	if n == 0 {
		return 0, 0
	}
	mean = s.sum / n
	if v := s.sq/n - mean*mean; v > 0 {
		std = math.Sqrt(v)
	}
	return mean, std
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func fromMS(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }
