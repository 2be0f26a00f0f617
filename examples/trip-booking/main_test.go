package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

func TestRun(t *testing.T) {
	for range 20 { // the hotel and the car run in parallel: vary the interleavings
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		var out bytes.Buffer
		err := run(ctx, &out, nil)
		cancel()
		if err != nil {
			t.Fatalf("run: %v\n%s", err, out.String())
		}
		got := out.String()
		for _, want := range []string{
			"car    trip-1 refused: car: none left",
			`trip-1 compensated: saga "trip-1" compensated at step "car": car: none left`,
			"coordinator A: saga \"trip-2\" interrupted: coordinator process crashed",
			"car    trip-2 repeated request trip-2/car/action: returning car-1, nothing booked twice",
			"coordinator B resumed trip-2: completed",
			"    car    succeeded    attempts=2 ref=car-1",
			"flight trip-1=0 trip-2=1",
			"hotel  trip-1=0 trip-2=1",
			"car    trip-1=0 trip-2=1",
			"  v1  saga.started\n",
			"saga.completed",
		} {
			if !strings.Contains(got, want) {
				t.Fatalf("output lacks %q:\n%s", want, got)
			}
		}
		// Compensation runs in reverse order: the hotel before the flight.
		h, f := strings.Index(got, "hotel  trip-1 cancelled"), strings.Index(got, "flight trip-1 cancelled")
		if h < 0 || f < 0 || h > f {
			t.Fatalf("compensation order wrong (hotel at %d, flight at %d):\n%s", h, f, got)
		}
		if strings.Contains(got, "car-2") {
			t.Fatalf("a second car was rented:\n%s", got)
		}
	}
}

func TestRunVerboseLogsCarryTheSagaID(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), &out, []string{"-v"}); err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(out.String(), "\n") {
		if strings.Contains(line, "msg=saga:") && !strings.Contains(line, "saga_id=trip-") {
			t.Errorf("log line without the saga ID: %s", line)
		}
	}
	if !strings.Contains(out.String(), "msg=\"saga: resuming\"") {
		t.Errorf("no resume logged:\n%s", out.String())
	}
}
