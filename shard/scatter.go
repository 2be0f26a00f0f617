package shard

import (
	"context"
	"errors"
	"slices"
	"sync"

	"golang.org/x/sync/errgroup"
)

// Scatter calls fn once for every shard that may hold data, at most limit at
// a time (limit <= 0 means no limit), and waits for all of them. During a
// reshard that includes the shards being moved from. A failing shard does
// not stop the others: Scatter returns the errors of all failed shards
// joined with [errors.Join], each a [*ShardError]. Shards not yet started
// when ctx is cancelled fail with ctx.Err(). The routing state is pinned
// for the duration, as by [Router.Do].
func (r *Router[T]) Scatter(ctx context.Context, limit int, fn func(ctx context.Context, shard string, res T) error) error {
	_, err := Gather(ctx, r, limit, func(ctx context.Context, shard string, res T) (struct{}, error) {
		return struct{}{}, fn(ctx, shard, res)
	})
	return err
}

// Gather is [Router.Scatter] for calls that return a result: it returns the
// results of the shards that succeeded, by shard name, along with the
// joined errors of those that failed.
func Gather[T, R any](ctx context.Context, r *Router[T], limit int, fn func(ctx context.Context, shard string, res T) (R, error)) (map[string]R, error) {
	s := r.pin()
	defer s.unpin()
	return gather(ctx, s, limit, fn)
}

// gather runs fn over the shards of a pinned state.
func gather[T, R any](ctx context.Context, s *state[T], limit int, fn func(ctx context.Context, shard string, res T) (R, error)) (map[string]R, error) {
	shards := slices.Clone(s.m.shards)
	if s.prev != nil {
		shards = append(shards, s.prev.shards...)
		slices.Sort(shards)
		shards = slices.Compact(shards)
	}
	var (
		mu      sync.Mutex
		results = make(map[string]R, len(shards))
		errs    = make([]error, len(shards))
	)
	var g errgroup.Group
	if limit > 0 {
		g.SetLimit(limit)
	}
	for i, name := range shards {
		g.Go(func() error {
			if err := ctx.Err(); err != nil {
				errs[i] = &ShardError{Shard: name, Err: err}
				return nil
			}
			v, err := fn(ctx, name, s.res[name])
			if err != nil {
				errs[i] = &ShardError{Shard: name, Err: err}
				return nil
			}
			mu.Lock()
			results[name] = v
			mu.Unlock()
			return nil
		})
	}
	_ = g.Wait() // the goroutines record errors instead of returning them
	return results, errors.Join(errs...)
}
