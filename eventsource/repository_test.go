package eventsource_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/distkit/distkit/eventsource"
)

func newAccounts(t *testing.T, s eventsource.Store, cfg eventsource.RepositoryConfig[*account]) *eventsource.Repository[*account] {
	t.Helper()
	if cfg.Type == "" {
		cfg.Type = "account"
	}
	repo, err := eventsource.NewRepository(s, accountRegistry(t), cfg)
	require.NoError(t, err)
	return repo
}

func TestRepositoryExecuteAndLoad(t *testing.T) {
	ctx := context.Background()
	s := eventsource.NewMemoryStore()
	repo := newAccounts(t, s, eventsource.RepositoryConfig[*account]{})

	st, v, err := repo.Load(ctx, "1")
	require.NoError(t, err)
	assert.Equal(t, uint64(0), v, "an aggregate without events has version 0")
	assert.False(t, st.Open)

	res, err := repo.Execute(ctx, "1", deposit(100))
	require.NoError(t, err)
	assert.Equal(t, uint64(2), res.Version)
	assert.Equal(t, uint64(2), res.Position)
	assert.Equal(t, int64(100), res.State.Balance)
	require.Len(t, res.Events, 2)
	assert.Equal(t, "account.opened", res.Events[0].Type)
	assert.Equal(t, eventsource.Event{}.Metadata, res.Events[0].Metadata)

	res, err = repo.Execute(ctx, "1", withdraw(30))
	require.NoError(t, err)
	assert.Equal(t, int64(70), res.State.Balance)

	_, err = repo.Execute(ctx, "1", withdraw(71))
	require.ErrorIs(t, err, errOverdraft, "the business rule's error is returned as is")
	v, _ = s.StreamVersion(ctx, "account-1")
	assert.Equal(t, uint64(3), v, "a rejected command stores nothing")

	st, v, err = repo.Load(ctx, "1")
	require.NoError(t, err)
	assert.Equal(t, uint64(3), v)
	assert.Equal(t, res.State.Balance, st.Balance, "a reload sees what Execute returned")

	// The stored events are what Result.Events says.
	var stored []eventsource.Event
	for e, err := range s.ReadStream(ctx, repo.StreamID("1"), eventsource.StreamQuery{}) {
		require.NoError(t, err)
		stored = append(stored, e)
	}
	require.Len(t, stored, 3)
	assert.Equal(t, res.Events[0].ID, stored[2].ID)
	assert.Equal(t, res.Events[0].Position, stored[2].Position)
	assert.Equal(t, "account", eventsource.Category(stored[0].StreamID))

	// A command that decides nothing stores nothing.
	res, err = repo.Execute(ctx, "1", func(*account) ([]any, error) { return nil, nil })
	require.NoError(t, err)
	assert.Equal(t, uint64(3), res.Version)
	assert.Zero(t, res.Position)
}

func TestRepositoryStampsMetadata(t *testing.T) {
	s := eventsource.NewMemoryStore()
	repo := newAccounts(t, s, eventsource.RepositoryConfig[*account]{})
	md := eventsource.Metadata{CorrelationID: "req-7", CausationID: "cmd-3", Headers: map[string]string{"user": "ann"}}
	ctx := eventsource.WithMetadata(context.Background(), md)
	_, err := repo.Execute(ctx, "1", deposit(5))
	require.NoError(t, err)
	n := 0
	for e, err := range s.ReadAll(context.Background(), 0, eventsource.Filter{}) {
		require.NoError(t, err)
		assert.Equal(t, md, e.Metadata)
		n++
	}
	assert.Equal(t, 2, n)
	got, ok := eventsource.MetadataFrom(ctx)
	assert.True(t, ok)
	assert.Equal(t, md, got)
	_, ok = eventsource.MetadataFrom(context.Background())
	assert.False(t, ok)
}

// conflictOnce returns a command that, the first time it runs, lets a
// rival write to the same aggregate first (as a concurrent request would),
// so that its own append conflicts.
func conflictOnce(t *testing.T, repo *eventsource.Repository[*account], id string, amount int64) (func(*account) ([]any, error), *int) {
	runs := 0
	return func(a *account) ([]any, error) {
		runs++
		if runs == 1 {
			_, err := repo.Execute(context.Background(), id, deposit(1000))
			require.NoError(t, err)
		}
		return withdraw(amount)(a)
	}, &runs
}

func TestRepositoryConflict(t *testing.T) {
	ctx := context.Background()
	t.Run("NoRetryReturnsConflict", func(t *testing.T) {
		s := eventsource.NewMemoryStore()
		repo := newAccounts(t, s, eventsource.RepositoryConfig[*account]{})
		_, err := repo.Execute(ctx, "1", deposit(100))
		require.NoError(t, err)
		cmd, runs := conflictOnce(t, repo, "1", 50)
		res, err := repo.Execute(ctx, "1", cmd)
		var ce *eventsource.ConcurrencyError
		require.ErrorAs(t, err, &ce)
		assert.Equal(t, eventsource.Exact(2), ce.Expected)
		assert.Equal(t, uint64(3), ce.Actual)
		assert.Equal(t, 1, *runs)
		assert.Equal(t, 1, res.Attempts)
	})
	t.Run("RetryReloadsAndReexecutes", func(t *testing.T) {
		s := eventsource.NewMemoryStore()
		repo := newAccounts(t, s, eventsource.RepositoryConfig[*account]{ConflictRetries: 2})
		_, err := repo.Execute(ctx, "1", deposit(100))
		require.NoError(t, err)
		// 1050 would overdraw the loaded state (100) but not the reloaded
		// one (1100): the retry really re-decides on fresh state.
		cmd, runs := conflictOnce(t, repo, "1", 1050)
		_, err = repo.Execute(ctx, "1", func(a *account) ([]any, error) {
			if *runs == 0 {
				*runs = 1
				_, err := repo.Execute(ctx, "1", deposit(1000))
				require.NoError(t, err)
				return []any{Withdrawn{Amount: 1}}, nil // decided on stale state
			}
			return cmd(a)
		})
		require.NoError(t, err)
		st, v, err := repo.Load(ctx, "1")
		require.NoError(t, err)
		assert.Equal(t, uint64(4), v)
		assert.Equal(t, int64(50), st.Balance)
	})
	t.Run("RetriesRunOut", func(t *testing.T) {
		s := eventsource.NewMemoryStore()
		repo := newAccounts(t, s, eventsource.RepositoryConfig[*account]{ConflictRetries: 3})
		_, err := repo.Execute(ctx, "1", deposit(100))
		require.NoError(t, err)
		runs := 0
		res, err := repo.Execute(ctx, "1", func(a *account) ([]any, error) {
			runs++
			_, err := s.Append(ctx, "account-1", eventsource.Any, eventsource.EventData{Type: "account.deposited", Data: []byte(`{"Amount":1}`)})
			require.NoError(t, err)
			return []any{Deposited{Amount: 1}}, nil
		})
		require.ErrorIs(t, err, eventsource.ErrConcurrencyConflict)
		assert.Equal(t, 4, runs, "one attempt plus three retries")
		assert.Equal(t, 4, res.Attempts)
	})
}

// Many goroutines deposit into one account with retries: no deposit is lost
// and none is applied twice.
func TestRepositoryConcurrentCommands(t *testing.T) {
	ctx := context.Background()
	s := eventsource.NewMemoryStore()
	repo := newAccounts(t, s, eventsource.RepositoryConfig[*account]{ConflictRetries: 1000})
	_, err := repo.Execute(ctx, "1", deposit(0))
	require.NoError(t, err)
	const workers, each = 6, 25
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range each {
				if _, err := repo.Execute(ctx, "1", deposit(1)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	st, v, err := repo.Load(ctx, "1")
	require.NoError(t, err)
	assert.Equal(t, int64(workers*each), st.Balance)
	assert.Equal(t, uint64(2+workers*each), v)
}

func TestRepositorySnapshotPolicy(t *testing.T) {
	ctx := context.Background()
	s := eventsource.NewMemoryStore()
	snaps := eventsource.NewMemorySnapshotStore()
	repo := newAccounts(t, s, eventsource.RepositoryConfig[*account]{Snapshots: snaps, SnapshotEvery: 10})
	for range 24 {
		_, err := repo.Execute(ctx, "1", deposit(1)) // 2 events the first time, then 1
		require.NoError(t, err)
	}
	snap, err := snaps.LoadSnapshot(ctx, "account-1")
	require.NoError(t, err)
	assert.Equal(t, uint64(20), snap.Version, "every 10 events: at 10 and 20")
	assert.Equal(t, "account", snap.AggregateType)
	assert.Equal(t, 1, snap.SchemaVersion)

	st, v, err := repo.Load(ctx, "1")
	require.NoError(t, err)
	assert.Equal(t, uint64(25), v)
	assert.Equal(t, int64(24), st.Balance)
	assert.Equal(t, 5, st.Replayed, "loaded from the snapshot at 20")
	assert.Equal(t, 25, st.Applied)
}

func TestRepositoryDiscardsBadSnapshots(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name   string
		mutate func(*eventsource.Snapshot)
	}{
		{"SchemaChanged", func(s *eventsource.Snapshot) { s.SchemaVersion = 99 }},
		{"OtherAggregateType", func(s *eventsource.Snapshot) { s.AggregateType = "loan" }},
		{"OtherStream", func(s *eventsource.Snapshot) { s.StreamID = "account-2" }},
		{"Corrupt", func(s *eventsource.Snapshot) { s.Data = []byte(`{"Balance":`) }},
		{"Null", func(s *eventsource.Snapshot) { s.Data = []byte(`null`) }},
		{"BeyondStream", func(s *eventsource.Snapshot) { s.Version = 500 }},
		{"VersionZero", func(s *eventsource.Snapshot) { s.Version = 0 }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := eventsource.NewMemoryStore()
			snaps := &overrideSnapshots{}
			var logs bytes.Buffer
			logger := slog.New(slog.NewTextHandler(&logs, nil))
			repo := newAccounts(t, s, eventsource.RepositoryConfig[*account]{Snapshots: snaps, SnapshotEvery: 5, Logger: logger})
			for range 11 {
				_, err := repo.Execute(ctx, "1", deposit(1))
				require.NoError(t, err)
			}
			snap, err := snaps.LoadSnapshot(ctx, "account-1")
			require.NoError(t, err)
			require.Equal(t, uint64(10), snap.Version)
			tc.mutate(&snap)
			snaps.override = &snap
			logs.Reset()

			st, v, err := repo.Load(ctx, "1")
			require.NoError(t, err, "a bad snapshot never fails a load")
			assert.Equal(t, uint64(12), v)
			assert.Equal(t, int64(11), st.Balance)
			assert.Equal(t, 12, st.Replayed, "replayed from the start")
			assert.Contains(t, logs.String(), "discarding snapshot")

			// The load replaced it with a good one.
			fresh, err := snaps.LoadSnapshot(ctx, "account-1")
			require.NoError(t, err)
			assert.Equal(t, uint64(12), fresh.Version)
			st, _, err = repo.Load(ctx, "1")
			require.NoError(t, err)
			assert.Equal(t, 0, st.Replayed)
			assert.Equal(t, int64(11), st.Balance)
		})
	}
}

// overrideSnapshots returns override, when set, until the next save.
type overrideSnapshots struct {
	eventsource.MemorySnapshotStore
	override *eventsource.Snapshot
}

func (o *overrideSnapshots) LoadSnapshot(ctx context.Context, id string) (eventsource.Snapshot, error) {
	if o.override != nil {
		return *o.override, nil
	}
	return o.MemorySnapshotStore.LoadSnapshot(ctx, id)
}

func (o *overrideSnapshots) SaveSnapshot(ctx context.Context, s eventsource.Snapshot) error {
	o.override = nil
	return o.MemorySnapshotStore.SaveSnapshot(ctx, s)
}

type failingSnapshots struct {
	eventsource.MemorySnapshotStore
}

func (*failingSnapshots) LoadSnapshot(context.Context, string) (eventsource.Snapshot, error) {
	return eventsource.Snapshot{}, errors.New("disk on fire")
}

func TestRepositorySnapshotStoreFailureReplays(t *testing.T) {
	ctx := context.Background()
	s := eventsource.NewMemoryStore()
	var logs bytes.Buffer
	repo := newAccounts(t, s, eventsource.RepositoryConfig[*account]{
		Snapshots: &failingSnapshots{}, Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	_, err := repo.Execute(ctx, "1", deposit(3))
	require.NoError(t, err)
	st, v, err := repo.Load(ctx, "1")
	require.NoError(t, err)
	assert.Equal(t, uint64(2), v)
	assert.Equal(t, int64(3), st.Balance)
	assert.Contains(t, logs.String(), "disk on fire")
}

func TestRepositoryTimeTravelByVersion(t *testing.T) {
	ctx := context.Background()
	s := eventsource.NewMemoryStore()
	snaps := eventsource.NewMemorySnapshotStore()
	repo := newAccounts(t, s, eventsource.RepositoryConfig[*account]{Snapshots: snaps, SnapshotEvery: 4})
	for i := range 9 {
		_, err := repo.Execute(ctx, "1", deposit(int64(i+1)*10)) // balances 10, 30, 60, 100, ...
		require.NoError(t, err)
	}
	tests := []struct {
		version     uint64
		wantVersion uint64
		balance     int64
		replayed    int
	}{
		{0, 0, 0, 0},
		{1, 1, 0, 1},
		{2, 2, 10, 2},
		{3, 3, 30, 3},
		{7, 7, 210, 7},   // the snapshot (at 8) is newer: replayed
		{8, 8, 280, 0},   // exactly the snapshot
		{9, 9, 360, 1},   // snapshot plus one
		{99, 10, 450, 2}, // past the end: the current state
	}
	for _, tc := range tests {
		st, v, err := repo.LoadVersion(ctx, "1", tc.version)
		require.NoError(t, err)
		assert.Equal(t, tc.wantVersion, v, "version %d", tc.version)
		assert.Equal(t, tc.balance, st.Balance, "balance as of version %d", tc.version)
		assert.Equal(t, tc.replayed, st.Replayed, "events replayed for version %d", tc.version)
	}
}

func TestRepositoryTimeTravelByTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		s := eventsource.NewMemoryStore()
		snaps := eventsource.NewMemorySnapshotStore()
		repo := newAccounts(t, s, eventsource.RepositoryConfig[*account]{Snapshots: snaps, SnapshotEvery: 3})
		start := time.Now()
		for range 5 { // day 0: open+deposit (v2), then one deposit a day (v3..v6)
			_, err := repo.Execute(ctx, "1", deposit(100))
			require.NoError(t, err)
			time.Sleep(24 * time.Hour)
		}
		snap, err := snaps.LoadSnapshot(ctx, "account-1")
		require.NoError(t, err)
		require.Equal(t, uint64(6), snap.Version)
		tests := []struct {
			name     string
			at       time.Time
			version  uint64
			balance  int64
			replayed int
		}{
			{"BeforeOpening", start.Add(-time.Second), 0, 0, 0},
			{"Opening", start, 2, 100, 2},
			{"MidDay2", start.Add(36 * time.Hour), 3, 200, 3},
			{"Day4", start.Add(4 * 24 * time.Hour), 6, 500, 0},
			{"Later", start.Add(100 * 24 * time.Hour), 6, 500, 0},
		}
		for _, tc := range tests {
			st, v, err := repo.LoadAsOf(ctx, "1", tc.at)
			require.NoError(t, err)
			assert.Equal(t, tc.version, v, tc.name)
			assert.Equal(t, tc.balance, st.Balance, tc.name)
			assert.Equal(t, tc.replayed, st.Replayed, tc.name)
		}
		st, v, err := repo.LoadAsOf(ctx, "1", time.Time{})
		require.NoError(t, err)
		assert.Zero(t, v)
		assert.False(t, st.Open)
	})
}

// Upcasting through a repository: an event stored in an old schema loads as
// the current type.
func TestRepositoryLoadsOldSchemas(t *testing.T) {
	ctx := context.Background()
	s := eventsource.NewMemoryStore()
	reg := historyRegistry(t)
	require.NoError(t, eventsource.Register[Opened](reg, "account.opened", 1))
	_, err := s.Append(ctx, "ledger-1", eventsource.NoStream,
		eventsource.EventData{Type: "account.opened", Data: []byte(`{"Owner":"bo"}`)},
		eventsource.EventData{Type: "MoneyDeposited", SchemaVersion: 1, Data: []byte(`{"Cents":250}`)},
		eventsource.EventData{Type: "account.deposited", SchemaVersion: 2, Data: []byte(`{"amount":1.5}`)},
		eventsource.EventData{Type: "account.deposited", SchemaVersion: 3, Data: []byte(`{"amount":100,"currency":"EUR"}`)},
	)
	require.NoError(t, err)
	repo, err := eventsource.NewRepository(s, reg, eventsource.RepositoryConfig[*ledger]{Type: "ledger"})
	require.NoError(t, err)
	st, v, err := repo.Load(ctx, "1")
	require.NoError(t, err)
	assert.Equal(t, uint64(4), v)
	assert.Equal(t, int64(250+150+100), st.Cents)
	assert.Equal(t, "bo", st.Owner)
}

type ledger struct {
	Owner string
	Cents int64
}

func (l *ledger) Apply(e any) error {
	switch e := e.(type) {
	case Opened:
		l.Owner = e.Owner
	case DepositedV3:
		l.Cents += e.Amount
	default:
		return errors.New("unexpected")
	}
	return nil
}

func TestRepositoryApplyErrorFailsLoad(t *testing.T) {
	ctx := context.Background()
	s := eventsource.NewMemoryStore()
	reg := accountRegistry(t)
	repo, err := eventsource.NewRepository(s, reg, eventsource.RepositoryConfig[*ledger]{Type: "account"})
	require.NoError(t, err)
	_, err = s.Append(ctx, "account-1", eventsource.NoStream, eventsource.EventData{Type: "account.withdrawn", Data: []byte(`{}`)})
	require.NoError(t, err)
	_, _, err = repo.Load(ctx, "1")
	require.Error(t, err)
	assert.Contains(t, err.Error(), `apply account.withdrawn to stream "account-1" at version 1`)

	_, err = s.Append(ctx, "account-2", eventsource.NoStream, eventsource.EventData{Type: "account.closed"})
	require.NoError(t, err)
	_, _, err = repo.Load(ctx, "2")
	require.ErrorIs(t, err, eventsource.ErrUnknownEvent)
}

type valueState map[string]int

func (v valueState) Apply(any) error { v["n"]++; return nil }

func TestNewRepositoryConfigErrors(t *testing.T) {
	s := eventsource.NewMemoryStore()
	reg := accountRegistry(t)
	tests := []struct {
		name string
		err  error
	}{
		{"NilStore", errOf(eventsource.NewRepository(nil, reg, eventsource.RepositoryConfig[*account]{Type: "a"}))},
		{"NilRegistry", errOf(eventsource.NewRepository(s, nil, eventsource.RepositoryConfig[*account]{Type: "a"}))},
		{"EmptyType", errOf(eventsource.NewRepository(s, reg, eventsource.RepositoryConfig[*account]{}))},
		{"DashInType", errOf(eventsource.NewRepository(s, reg, eventsource.RepositoryConfig[*account]{Type: "bank-account"}))},
		{"NegativeRetries", errOf(eventsource.NewRepository(s, reg, eventsource.RepositoryConfig[*account]{Type: "a", ConflictRetries: -1}))},
		{"NegativeSnapshotSchema", errOf(eventsource.NewRepository(s, reg, eventsource.RepositoryConfig[*account]{Type: "a", SnapshotSchemaVersion: -1}))},
		{"NonPointerWithoutNew", errOf(eventsource.NewRepository(s, reg, eventsource.RepositoryConfig[valueState]{Type: "a"}))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			require.ErrorIs(t, tc.err, eventsource.ErrInvalidConfig)
		})
	}
	t.Run("InvalidRegistry", func(t *testing.T) {
		bad := eventsource.NewRegistry(nil)
		require.NoError(t, bad.AddUpcaster(eventsource.Upcaster{FromType: "x", ToType: "y", ToVersion: 1, Func: noop}))
		_, err := eventsource.NewRepository(s, bad, eventsource.RepositoryConfig[*account]{Type: "a"})
		require.ErrorIs(t, err, eventsource.ErrInvalidRegistry)
	})
	t.Run("NonPointerWithNew", func(t *testing.T) {
		repo, err := eventsource.NewRepository(s, reg, eventsource.RepositoryConfig[valueState]{
			Type: "counter", New: func() valueState { return valueState{} },
		})
		require.NoError(t, err)
		res, err := repo.Execute(context.Background(), "1", func(valueState) ([]any, error) { return []any{Deposited{}}, nil })
		require.NoError(t, err)
		assert.Equal(t, 1, res.State["n"])
	})
}

func errOf[T any](_ T, err error) error { return err }

func TestRepositoryHonoursContext(t *testing.T) {
	s := eventsource.NewMemoryStore()
	repo := newAccounts(t, s, eventsource.RepositoryConfig[*account]{Snapshots: eventsource.NewMemorySnapshotStore()})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := repo.Execute(ctx, "1", deposit(1))
	require.ErrorIs(t, err, context.Canceled)
	_, _, err = repo.Load(ctx, "1")
	require.ErrorIs(t, err, context.Canceled)
	h, _ := s.Head(context.Background())
	assert.Zero(t, h)
}
