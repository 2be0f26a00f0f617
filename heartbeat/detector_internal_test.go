package heartbeat

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
)

// Akka's PhiAccrualFailureDetectorSpec "return realistic phi values":
// mean 1000 ms, standard deviation 100 ms.
func TestPhiMatchesAkkaReferenceValues(t *testing.T) {
	for diff, want := range map[float64]float64{
		0: 0.0, 500: 0.1, 1000: 0.3, 1200: 1.6, 1400: 4.7, 1600: 10.8, 1700: 15.3,
	} {
		assert.InDelta(t, want, phi(diff, 1000, 100), 0.1, "phi(%v)", diff)
	}
	// The logistic approximation of the normal CDF at the mean is 1/2.
	assert.InDelta(t, -math.Log10(0.5), phi(1000, 1000, 100), 1e-9)
}

func TestSamplesRunningSumsStayExact(t *testing.T) {
	s := newSamples(7)
	var ring []float64
	for i := range 10_000 {
		v := float64(float32(1000 + (i*7919)%400))
		s.add(v)
		ring = append(ring, v)
		if len(ring) > 7 {
			ring = ring[1:]
		}
		var sum, sq float64
		for _, x := range ring {
			sum += x
			sq += x * x
		}
		mean := sum / float64(len(ring))
		std := math.Sqrt(max(0, sq/float64(len(ring))-mean*mean))
		m, d := s.meanStd()
		if math.Abs(m-mean) > 1e-6 || math.Abs(d-std) > 1e-3 {
			t.Fatalf("after %d samples: mean %v std %v, want %v %v", i+1, m, d, mean, std)
		}
	}
	assert.Len(t, s.ring, 7, "the ring must not grow past its limit")
}
