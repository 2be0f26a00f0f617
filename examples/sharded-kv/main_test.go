package main

import (
	"bytes"
	"context"
	"regexp"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRun(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, run(context.Background(), &out, []string{"-keys", "4000"}))
	text := out.String()
	t.Log(text)
	assert.Contains(t, text, "all 4000 keys readable on [shard-0 shard-2 shard-3 shard-4] at epoch 3")
	assert.Equal(t, 2, bytes.Count(out.Bytes(), []byte("failed reads 0")))

	// Each step moves close to the ideal number of keys.
	moved := regexp.MustCompile(`([0-9.]+)x the ideal`).FindAllStringSubmatch(text, -1)
	require.Len(t, moved, 2)
	for _, m := range moved {
		ratio, err := strconv.ParseFloat(m[1], 64)
		require.NoError(t, err)
		assert.InDelta(t, 1, ratio, 0.1)
	}
	// And the keys stay evenly spread.
	for _, m := range regexp.MustCompile(`max/mean ([0-9.]+)`).FindAllStringSubmatch(text, -1) {
		ratio, err := strconv.ParseFloat(m[1], 64)
		require.NoError(t, err)
		assert.Less(t, ratio, 1.1)
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	var out bytes.Buffer
	assert.Error(t, run(context.Background(), &out, []string{"-keys", "0"}))
	assert.Error(t, run(context.Background(), &out, []string{"-nope"}))
}

func TestRunStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out bytes.Buffer
	assert.ErrorIs(t, run(ctx, &out, []string{"-keys", "100"}), context.Canceled)
}
