package eventsource

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
)

// Codec turns values into bytes and back. [JSON] is the default.
// Implementations must be safe for concurrent use.
type Codec interface {
	Marshal(v any) ([]byte, error)
	Unmarshal(data []byte, v any) error
}

// JSON is the default [Codec], backed by encoding/json.
var JSON Codec = jsonCodec{}

type jsonCodec struct{}

func (jsonCodec) Marshal(v any) ([]byte, error)      { return json.Marshal(v) }
func (jsonCodec) Unmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }

// UpcastFunc rewrites an encoded payload from one schema to the next.
type UpcastFunc func(data []byte) ([]byte, error)

// Upcaster turns stored events of one type and schema version into
// another, newer, shape: usually the same type at the next version, or a
// renamed type. Upcasters only change what is read; the log is never
// rewritten.
type Upcaster struct {
	// FromType and FromVersion identify the old events (version 0 means 1).
	FromType    string
	FromVersion int
	// ToType and ToVersion identify what Func produces (an empty ToType
	// means FromType).
	ToType    string
	ToVersion int
	// Func rewrites the payload. It must be safe for concurrent use.
	Func UpcastFunc
}

// UpcastWith builds an [UpcastFunc] from a typed function: the payload is
// decoded into Old with c, converted, and encoded from New with c. A nil
// codec means [JSON].
func UpcastWith[Old, New any](c Codec, fn func(Old) (New, error)) UpcastFunc {
	if c == nil {
		c = JSON
	}
	return func(data []byte) ([]byte, error) {
		var old Old
		if err := c.Unmarshal(data, &old); err != nil {
			return nil, err
		}
		v, err := fn(old)
		if err != nil {
			return nil, err
		}
		return c.Marshal(v)
	}
}

type eventKey struct {
	typ     string
	version int
}

func (k eventKey) String() string { return fmt.Sprintf("%s/v%d", k.typ, k.version) }

type registration struct {
	key    eventKey
	goType reflect.Type
	decode func(c Codec, data []byte) (any, error)
}

// Registry maps event type names and schema versions to Go types. Each
// name has one current version bound to one Go type ([Register]); older
// versions, and renamed types, reach the current one through [Upcaster]
// chains ([Registry.AddUpcaster]). Payloads are encoded with the registry's
// [Codec].
//
// Registrations are checked as they are made, and the whole set is
// validated once, at the first call to [Registry.Validate],
// [Registry.Encode] or [Registry.Decode]: every upcaster chain must end at a
// registered current version, without cycles, dead ends or missing
// versions. From then on the registry is sealed: further registrations
// return [ErrRegistrySealed], and Encode and Decode are safe for concurrent
// use without locking.
type Registry struct {
	codec Codec

	mu        sync.Mutex
	sealed    bool
	current   map[string]*registration
	byGoType  map[reflect.Type]*registration
	upcasters map[eventKey]Upcaster

	once sync.Once
	err  error // validation result, set once
}

// NewRegistry returns an empty registry using codec; nil means [JSON].
func NewRegistry(codec Codec) *Registry {
	if codec == nil {
		codec = JSON
	}
	return &Registry{
		codec:     codec,
		current:   make(map[string]*registration),
		byGoType:  make(map[reflect.Type]*registration),
		upcasters: make(map[eventKey]Upcaster),
	}
}

// Codec returns the registry's codec.
func (r *Registry) Codec() Codec { return r.codec }

// Register binds the event type name, at its current schema version
// (0 means 1), to the Go type T, which must be a non-pointer, non-interface
// type. Decoded events of this type are values of T.
//
// It returns an error wrapping [ErrInvalidRegistry] when r is nil, the name
// is empty or already registered or T is already registered under another
// name, and [ErrRegistrySealed] once the registry is in use.
func Register[T any](r *Registry, name string, version int) error {
	t := reflect.TypeFor[T]()
	if r == nil {
		return fmt.Errorf("%w: register %q: nil registry", ErrInvalidRegistry, name)
	}
	if t.Kind() == reflect.Pointer || t.Kind() == reflect.Interface {
		return fmt.Errorf("%w: register %q: Go type %s: use a non-pointer, non-interface type", ErrInvalidRegistry, name, t)
	}
	reg := &registration{
		key:    eventKey{name, max(version, 1)},
		goType: t,
		decode: func(c Codec, data []byte) (any, error) {
			var v T
			if err := c.Unmarshal(data, &v); err != nil {
				return nil, err
			}
			return v, nil
		},
	}
	return r.register(reg, version)
}

func (r *Registry) register(reg *registration, version int) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.sealed:
		return fmt.Errorf("%w: register %q", ErrRegistrySealed, reg.key.typ)
	case reg.key.typ == "":
		return fmt.Errorf("%w: register %s: empty type name", ErrInvalidRegistry, reg.goType)
	case version < 0:
		return fmt.Errorf("%w: register %q: negative schema version %d", ErrInvalidRegistry, reg.key.typ, version)
	}
	if old := r.current[reg.key.typ]; old != nil {
		return fmt.Errorf("%w: type %q already registered (version %d, Go type %s)",
			ErrInvalidRegistry, reg.key.typ, old.key.version, old.goType)
	}
	if old := r.byGoType[reg.goType]; old != nil {
		return fmt.Errorf("%w: Go type %s already registered as %q", ErrInvalidRegistry, reg.goType, old.key.typ)
	}
	r.current[reg.key.typ] = reg
	r.byGoType[reg.goType] = reg
	return nil
}

// AddUpcaster adds one step of an upcaster chain. It returns an error
// wrapping [ErrInvalidRegistry] when the step is malformed or a step from
// the same type and version exists, and [ErrRegistrySealed] once the
// registry is in use. Chains are checked as a whole by
// [Registry.Validate].
func (r *Registry) AddUpcaster(u Upcaster) error {
	u.FromVersion = max(u.FromVersion, 1)
	if u.ToType == "" {
		u.ToType = u.FromType
	}
	from := eventKey{u.FromType, u.FromVersion}
	to := eventKey{u.ToType, u.ToVersion}
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.sealed:
		return fmt.Errorf("%w: upcaster from %s", ErrRegistrySealed, from)
	case u.FromType == "":
		return fmt.Errorf("%w: upcaster with empty FromType", ErrInvalidRegistry)
	case u.Func == nil:
		return fmt.Errorf("%w: upcaster from %s: nil Func", ErrInvalidRegistry, from)
	case u.ToVersion < 1:
		return fmt.Errorf("%w: upcaster from %s: ToVersion %d must be at least 1", ErrInvalidRegistry, from, u.ToVersion)
	case from == to:
		return fmt.Errorf("%w: upcaster from %s to itself", ErrInvalidRegistry, from)
	case from.typ == to.typ && to.version < from.version:
		return fmt.Errorf("%w: upcaster from %s goes back to %s", ErrInvalidRegistry, from, to)
	}
	if _, dup := r.upcasters[from]; dup {
		return fmt.Errorf("%w: two upcasters from %s", ErrInvalidRegistry, from)
	}
	r.upcasters[from] = u
	return nil
}

// Validate checks the registrations and upcaster chains as a whole and
// seals the registry. It returns nil or an error wrapping
// [ErrInvalidRegistry] that names the first problem: an upcaster from a
// current version, a chain that reaches a type and version neither
// registered nor upcast (a dead end), a chain that loops, or a registered
// type with upcasters from some old versions but not from every version
// between the oldest of them and the current one (a gap). The result is
// the same on every call.
func (r *Registry) Validate() error {
	r.once.Do(func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.sealed = true
		r.err = r.validate()
	})
	return r.err
}

func (r *Registry) validate() error {
	froms := make([]eventKey, 0, len(r.upcasters))
	for k := range r.upcasters {
		froms = append(froms, k)
	}
	slices.SortFunc(froms, func(a, b eventKey) int {
		if c := strings.Compare(a.typ, b.typ); c != 0 {
			return c
		}
		return a.version - b.version
	})
	oldest := make(map[string]int)
	for _, from := range froms {
		if cur := r.current[from.typ]; cur != nil {
			if from.version >= cur.key.version {
				return fmt.Errorf("%w: upcaster from %s, but %s is the current version",
					ErrInvalidRegistry, from, cur.key)
			}
			if v, ok := oldest[from.typ]; !ok || from.version < v {
				oldest[from.typ] = from.version
			}
		}
		seen := map[eventKey]bool{from: true}
		path := []string{from.String()}
		for k := from; ; {
			u, ok := r.upcasters[k]
			if !ok {
				if cur := r.current[k.typ]; cur != nil && cur.key == k {
					break
				}
				return fmt.Errorf("%w: upcaster chain %s ends at %s, which is neither registered nor upcast (a gap)",
					ErrInvalidRegistry, strings.Join(path, " -> "), k)
			}
			k = eventKey{u.ToType, u.ToVersion}
			path = append(path, k.String())
			if seen[k] {
				return fmt.Errorf("%w: upcaster cycle %s", ErrInvalidRegistry, strings.Join(path, " -> "))
			}
			seen[k] = true
		}
	}
	for typ, low := range oldest {
		cur := r.current[typ]
		for v := low; v < cur.key.version; v++ {
			if _, ok := r.upcasters[eventKey{typ, v}]; !ok {
				return fmt.Errorf("%w: type %q has upcasters from version %d but none from version %d (a gap before current version %d)",
					ErrInvalidRegistry, typ, low, v, cur.key.version)
			}
		}
	}
	return nil
}

// Encode encodes v, a value of (or pointer to) a registered Go type, into
// an [EventData] with its type name, current schema version and payload.
// ID and Metadata are left for the caller. It returns an
// [*UnknownEventError] for an unregistered Go type, the validation error of
// an invalid registry, or the codec's error.
func (r *Registry) Encode(v any) (EventData, error) {
	if err := r.Validate(); err != nil {
		return EventData{}, err
	}
	t := reflect.TypeOf(v)
	if t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	reg := r.byGoType[t]
	if reg == nil {
		name := "<nil>"
		if t != nil {
			name = t.String()
		}
		return EventData{}, &UnknownEventError{GoType: name}
	}
	data, err := r.codec.Marshal(v)
	if err != nil {
		return EventData{}, fmt.Errorf("eventsource: encode %s: %w", reg.key, err)
	}
	return EventData{Type: reg.key.typ, SchemaVersion: reg.key.version, Data: data}, nil
}

// Decode decodes ev's payload into a value of the Go type registered for
// its type, upcasting older schema versions (and renamed types) through
// their chain first. It returns an [*UnknownEventError] naming the type and
// version when no registration or upcaster applies (including a version
// newer than the registered one), the validation error of an invalid
// registry, or the error of an upcaster or the codec, wrapped with the
// event's position.
func (r *Registry) Decode(ev Event) (any, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	k := eventKey{ev.Type, max(ev.SchemaVersion, 1)}
	data := ev.Data
	for {
		if reg := r.current[k.typ]; reg != nil && reg.key.version == k.version {
			v, err := reg.decode(r.codec, data)
			if err != nil {
				return nil, fmt.Errorf("eventsource: decode %s (stream %q version %d): %w", k, ev.StreamID, ev.Version, err)
			}
			return v, nil
		}
		u, ok := r.upcasters[k]
		if !ok {
			return nil, r.unknown(k)
		}
		var err error
		if data, err = u.Func(data); err != nil {
			return nil, fmt.Errorf("eventsource: upcast %s (stream %q version %d): %w", k, ev.StreamID, ev.Version, err)
		}
		k = eventKey{u.ToType, u.ToVersion} // validated: reaches a registration
	}
}

func (r *Registry) unknown(k eventKey) error {
	e := &UnknownEventError{Type: k.typ, SchemaVersion: k.version}
	switch cur := r.current[k.typ]; {
	case cur == nil:
		e.Reason = "type not registered"
	case k.version > cur.key.version:
		e.Reason = fmt.Sprintf("newer than the registered version %d", cur.key.version)
	default:
		e.Reason = fmt.Sprintf("no upcaster to the registered version %d", cur.key.version)
	}
	return e
}
