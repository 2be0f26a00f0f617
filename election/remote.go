package election

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/distkit/distkit/heartbeat"
)

// Defaults of [RemoteStoreConfig].
const (
	DefaultRemoteRetry   = 100 * time.Millisecond
	DefaultRemoteTimeout = 5 * time.Second
	// maxServerWatch bounds one watch round on the server.
	maxServerWatch = time.Second
	// maxServerInflight bounds the requests a StoreServer serves at once.
	maxServerInflight = 1024
)

// StoreServer serves a [LeaseStore] (usually a [MemoryStore]) to
// [RemoteStore] clients over a datagram [heartbeat.Transport], so that
// lease and sequence electors in several processes share one store
// without an external service. It is a single point of failure: use it
// where that is acceptable (tests, small deployments, a sidecar), and
// etcd or a database behind the LeaseStore interface elsewhere.
//
// Every request is idempotent (an Acquire retried by its holder renews),
// so clients simply retransmit. A StoreServer is safe for concurrent use.
type StoreServer struct {
	tr    heartbeat.Transport
	store LeaseStore
	log   *slog.Logger
	sem   chan struct{}
	mu    sync.Mutex
	stop  context.CancelFunc
	done  chan struct{}
	shut  bool
}

// NewStoreServer returns a server for store on tr, which it does not
// close. log may be nil.
func NewStoreServer(tr heartbeat.Transport, store LeaseStore, log *slog.Logger) (*StoreServer, error) {
	if tr == nil || store == nil {
		return nil, configErr("NewStoreServer", "nil transport or store")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &StoreServer{tr: tr, store: store, log: log, sem: make(chan struct{}, maxServerInflight)}, nil
}

// Run serves requests until ctx ends or Close; it returns an error
// wrapping ctx.Err(), [ErrClosed], [ErrRunning], or the transport's
// error. Requests in progress are abandoned and waited for.
func (s *StoreServer) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.shut {
		s.mu.Unlock()
		return ErrClosed
	}
	if s.stop != nil {
		s.mu.Unlock()
		return ErrRunning
	}
	ctx, cancel := context.WithCancel(ctx)
	s.stop, s.done = cancel, make(chan struct{})
	done := s.done
	s.mu.Unlock()
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
		s.mu.Lock()
		s.stop = nil
		s.mu.Unlock()
		close(done)
	}()
	for {
		p, err := s.tr.Recv(ctx)
		if err != nil {
			s.mu.Lock()
			shut := s.shut
			s.mu.Unlock()
			switch {
			case shut:
				return ErrClosed
			case ctx.Err() != nil:
				return fmt.Errorf("election: store server: %w", ctx.Err())
			}
			return fmt.Errorf("election: store server: %w", err)
		}
		m, err := decode(p.Data)
		if err != nil || m.kind < kStoreAcquire || m.kind >= kStoreReply {
			s.log.Debug("election: store server dropped a packet", "from", p.From, "err", err)
			continue
		}
		select {
		case s.sem <- struct{}{}:
		default:
			continue // overloaded: the client retransmits
		}
		wg.Go(func() {
			defer func() { <-s.sem }()
			s.serve(ctx, p.From, m)
		})
	}
}

func (s *StoreServer) serve(ctx context.Context, from string, m wmsg) {
	r := wmsg{kind: kStoreReply, id: m.id}
	var l Lease
	var err error
	switch m.kind {
	case kStoreAcquire:
		l, err = s.store.Acquire(ctx, m.key, m.holder, m.ttl)
	case kStoreRenew:
		l, err = s.store.Renew(ctx, m.key, m.token, m.ttl)
	case kStoreRelease:
		err = s.store.Release(ctx, m.key, m.token)
	case kStoreGet:
		l, err = s.store.Get(ctx, m.key)
	case kStoreList:
		r.leases, err = s.store.List(ctx, m.key)
		if err == nil && len(r.leases) > maxWireList {
			err = fmt.Errorf("%d leases under %q, more than a reply carries", len(r.leases), m.key)
		}
	case kStoreWatch:
		wctx, cancel := context.WithTimeout(ctx, min(max(m.ttl, time.Millisecond), maxServerWatch))
		err = s.store.Watch(wctx, m.key, m.token)
		cancel()
		if err != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
			r.code = codeStillLive
			err = nil
		}
	}
	if ctx.Err() != nil {
		return
	}
	r.key, r.holder, r.token, r.ttl = l.Key, l.Holder, l.Epoch, l.TTL
	switch {
	case err == nil:
	case errors.Is(err, ErrLeaseHeld):
		r.code = codeHeld
	case errors.Is(err, ErrLeaseLost):
		r.code = codeLost
	case errors.Is(err, ErrNoLease):
		r.code = codeNoLease
	case errors.Is(err, ErrInvalidLease):
		r.code = codeInvalid
	default:
		r.code, r.leases = codeFailed, nil
		s.log.Warn("election: store failed", "err", err)
	}
	b, err := r.append(nil)
	if err != nil {
		return
	}
	_ = s.tr.Send(ctx, from, b)
}

// Close stops Run and waits for it. It does not close the transport. It
// is idempotent.
func (s *StoreServer) Close() error {
	s.mu.Lock()
	s.shut = true
	stop, done := s.stop, s.done
	s.mu.Unlock()
	if stop != nil {
		stop()
		<-done
	}
	return nil
}

// RemoteStoreConfig configures a [RemoteStore]. The zero value is ready
// to use.
type RemoteStoreConfig struct {
	// Retry is how long a request waits for its answer before it is sent
	// again. 0 means [DefaultRemoteRetry] (100 ms).
	Retry time.Duration
	// Timeout bounds a request (a watch round excepted) when its context
	// has no earlier deadline; it then fails with [ErrUnavailable]. 0
	// means [DefaultRemoteTimeout] (5 s).
	Timeout time.Duration
}

// RemoteStore is a [LeaseStore] served by a [StoreServer] at another
// address. Requests are retransmitted every Retry until answered; a
// request whose context ends first returns an error wrapping ctx.Err()
// and may or may not have taken effect, which the LeaseStore contract
// allows (an unacknowledged Acquire is either retried by its holder or
// expires).
//
// It owns one goroutine, which reads tr; [RemoteStore.Close] stops it and
// closes tr. A RemoteStore is safe for concurrent use.
type RemoteStore struct {
	tr     heartbeat.Transport
	server string
	cfg    RemoteStoreConfig
	stop   context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	next    uint64
	pending map[uint64]chan wmsg
	closed  bool
}

var _ LeaseStore = (*RemoteStore)(nil)

// NewRemoteStore returns a client of the server at addr over tr, which
// it owns from now on.
func NewRemoteStore(tr heartbeat.Transport, addr string, cfg RemoteStoreConfig) (*RemoteStore, error) {
	switch {
	case tr == nil:
		return nil, configErr("NewRemoteStore", "nil transport")
	case addr == "":
		return nil, configErr("NewRemoteStore", "empty server address")
	case cfg.Retry < 0 || cfg.Timeout < 0:
		return nil, configErr("RemoteStoreConfig", "negative Retry or Timeout")
	}
	if cfg.Retry == 0 {
		cfg.Retry = DefaultRemoteRetry
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultRemoteTimeout
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &RemoteStore{tr: tr, server: addr, cfg: cfg, stop: cancel, done: make(chan struct{}), pending: map[uint64]chan wmsg{}}
	go r.read(ctx)
	return r, nil
}

func (r *RemoteStore) read(ctx context.Context) {
	defer close(r.done)
	for {
		p, err := r.tr.Recv(ctx)
		if err != nil {
			return
		}
		m, err := decode(p.Data)
		if err != nil || m.kind != kStoreReply {
			continue
		}
		r.mu.Lock()
		ch := r.pending[m.id]
		delete(r.pending, m.id)
		r.mu.Unlock()
		if ch != nil {
			ch <- m // size 1, one reply per registration
		}
	}
}

// Close stops the reader, closes the transport and fails pending and
// later requests with [ErrClosed]. It is idempotent.
func (r *RemoteStore) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	r.mu.Unlock()
	r.stop()
	err := r.tr.Close()
	<-r.done
	return err
}

// call sends m until a reply arrives, ctx ends or the timeout passes.
func (r *RemoteStore) call(ctx context.Context, m wmsg, every time.Duration) (wmsg, error) {
	op := map[byte]string{kStoreAcquire: "acquire", kStoreRenew: "renew", kStoreRelease: "release",
		kStoreGet: "get", kStoreList: "list", kStoreWatch: "watch"}[m.kind]
	if err := ctxErr(ctx, op); err != nil {
		return wmsg{}, err
	}
	ctx, cancel := context.WithTimeoutCause(ctx, r.cfg.Timeout+m.ttl*boolInt(m.kind == kStoreWatch), ErrUnavailable)
	defer cancel()
	ch := make(chan wmsg, 1)
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return wmsg{}, ErrClosed
	}
	r.next++
	m.id = r.next
	r.pending[m.id] = ch
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.pending, m.id)
		r.mu.Unlock()
	}()
	b, err := m.append(nil)
	if err != nil {
		return wmsg{}, err
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if err := r.tr.Send(ctx, r.server, b); err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
			if errors.Is(err, heartbeat.ErrClosed) {
				return wmsg{}, ErrClosed
			}
			return wmsg{}, fmt.Errorf("election: remote %s: %w", op, err)
		}
		select {
		case rep := <-ch:
			return rep, nil
		case <-t.C:
		case <-ctx.Done():
			if c := context.Cause(ctx); errors.Is(c, ErrUnavailable) {
				return wmsg{}, fmt.Errorf("%w: %s %s: no answer from %s", ErrUnavailable, op, m.key, r.server)
			}
			return wmsg{}, fmt.Errorf("election: remote %s: %w", op, ctx.Err())
		}
	}
}

func boolInt(b bool) time.Duration {
	if b {
		return 1
	}
	return 0
}

func replyErr(rep wmsg, op, key string) error {
	switch rep.code {
	case codeOK, codeStillLive:
		return nil
	case codeHeld:
		return fmt.Errorf("%w: %q holds %q", ErrLeaseHeld, rep.holder, key)
	case codeLost:
		return fmt.Errorf("%w: %q", ErrLeaseLost, key)
	case codeNoLease:
		return fmt.Errorf("%w: %q", ErrNoLease, key)
	case codeInvalid:
		return fmt.Errorf("%w: %s %q refused by the server", ErrInvalidLease, op, key)
	}
	return fmt.Errorf("election: remote %s %q: the store failed", op, key)
}

func (r *RemoteStore) lease(ctx context.Context, m wmsg, op string) (Lease, error) {
	rep, err := r.call(ctx, m, r.cfg.Retry)
	if err != nil {
		return Lease{}, err
	}
	l := Lease{Key: rep.key, Holder: rep.holder, Epoch: rep.token, TTL: rep.ttl}
	if rep.code == codeNoLease || rep.code == codeLost {
		l = Lease{}
	}
	return l, replyErr(rep, op, m.key)
}

// Acquire implements [LeaseStore].
func (r *RemoteStore) Acquire(ctx context.Context, key, holder string, ttl time.Duration) (Lease, error) {
	if err := checkLeaseArgs(key, holder, 0, ttl, true, false, true); err != nil {
		return Lease{}, err
	}
	return r.lease(ctx, wmsg{kind: kStoreAcquire, key: key, holder: holder, ttl: ttl}, "acquire")
}

// Renew implements [LeaseStore].
func (r *RemoteStore) Renew(ctx context.Context, key string, epoch uint64, ttl time.Duration) (Lease, error) {
	if err := checkLeaseArgs(key, "", epoch, ttl, false, true, true); err != nil {
		return Lease{}, err
	}
	return r.lease(ctx, wmsg{kind: kStoreRenew, key: key, token: epoch, ttl: ttl}, "renew")
}

// Release implements [LeaseStore].
func (r *RemoteStore) Release(ctx context.Context, key string, epoch uint64) error {
	if err := checkLeaseArgs(key, "", epoch, 0, false, true, false); err != nil {
		return err
	}
	_, err := r.lease(ctx, wmsg{kind: kStoreRelease, key: key, token: epoch}, "release")
	return err
}

// Get implements [LeaseStore].
func (r *RemoteStore) Get(ctx context.Context, key string) (Lease, error) {
	if err := checkLeaseArgs(key, "", 0, 0, false, false, false); err != nil {
		return Lease{}, err
	}
	return r.lease(ctx, wmsg{kind: kStoreGet, key: key}, "get")
}

// List implements [LeaseStore]. It fails for more leases than one reply
// carries (64).
func (r *RemoteStore) List(ctx context.Context, prefix string) ([]Lease, error) {
	if len(prefix) > MaxIDLen {
		return nil, fmt.Errorf("%w: prefix of %d bytes, at most %d", ErrInvalidLease, len(prefix), MaxIDLen)
	}
	rep, err := r.call(ctx, wmsg{kind: kStoreList, key: prefix}, r.cfg.Retry)
	if err != nil {
		return nil, err
	}
	return rep.leases, replyErr(rep, "list", prefix)
}

// Watch implements [LeaseStore], in rounds of at most a second each.
func (r *RemoteStore) Watch(ctx context.Context, key string, epoch uint64) error {
	if err := checkLeaseArgs(key, "", epoch, 0, false, true, false); err != nil {
		return err
	}
	for {
		wait := maxServerWatch
		if d, ok := ctx.Deadline(); ok {
			wait = min(wait, time.Until(d))
		}
		if wait <= 0 {
			<-ctx.Done()
			return fmt.Errorf("election: remote watch: %w", ctx.Err())
		}
		rep, err := r.call(ctx, wmsg{kind: kStoreWatch, key: key, token: epoch, ttl: wait}, wait+r.cfg.Retry)
		if err != nil {
			return err
		}
		if rep.code != codeStillLive {
			return replyErr(rep, "watch", key)
		}
	}
}
