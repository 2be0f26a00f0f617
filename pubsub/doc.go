// Package pubsub is the publish/subscribe pattern: publishers send
// messages to named topics without knowing who receives them, and every
// subscription whose pattern matches a topic gets its own copy
// (broadcasting), or, inside a consumer group, one member gets each
// message (load sharing). Publishers and subscribers are decoupled in
// space (neither knows the other), in time (the broker queues) and in
// rate (bounded queues apply backpressure).
//
// The package defines small [Publisher] and [Subscriber] interfaces that
// backends implement, a [Message] (ID, topic, key, payload, headers,
// publish time, sequence and delivery attempt), typed helpers on top
// ([Marshal], [Unmarshal], [Typed]), a [Router] that runs many handlers
// with [Middleware], and [MemoryBroker], the in-memory reference
// implementation that behaves like a production broker (NATS JetStream is
// the model). The conformance suite in pubsub/pubsubtest holds every
// backend to the same contract.
//
// # When to use it
//
// Use pub/sub when one event has several independent consumers (an order
// was placed: bill it, ship it, email it), when producers must not wait
// for consumers, or when consumers come and go. Do not use it for a
// request that needs an answer (call the service), or when the consumer
// must see the producer's write immediately (pub/sub is asynchronous, so
// consumers are eventually consistent).
//
// # Guarantees
//
// Delivery is at least once: a message is delivered until its handler
// returns nil, fails permanently, or runs out of attempts and goes to the
// dead-letter topic. A message can be delivered more than once (a handler
// that succeeded but overran its ack deadline, a publisher that retried
// after a lost reply); make handlers idempotent, for example with the
// [Dedup] middleware, and give messages stable IDs ([NewMessage]) so that
// the broker's publish deduplication drops a retried publish.
//
// Order: each subscription sees a topic's messages in publish order. By
// default a subscription handles one message at a time, and a message
// waiting for redelivery holds back the later ones. With
// [SubscribeConfig.Concurrency] above 1, or in a consumer group, ordering
// is per [Message.Key]: messages with the same key are handled one at a
// time in publish order and a redelivery holds back only its key, while
// different keys run in parallel. There is no order across topics.
//
// The handler's return value is the acknowledgement: nil acks, an error
// made with [Permanent] terminates, any other error nacks and the message
// is redelivered after the next delay of [SubscribeConfig.Backoff] (never
// immediately, and never more than [SubscribeConfig.MaxDeliver] times).
// The ack deadline ([SubscribeConfig.AckWait]) is extended while the
// handler runs, up to [SubscribeConfig.MaxExtension].
//
// Backpressure: every subscription has a bounded queue
// ([SubscribeConfig.QueueSize]) and an [OverflowPolicy]: block the
// publisher (honouring its context), drop the oldest, drop the newest, or
// refuse with an error. A stalled subscription slows nobody but its own
// publishers, and only once its queue is full. Goroutines grow with
// subscriptions (Concurrency each), never with messages.
//
// What the memory broker does not survive: a process crash loses every
// queued message. A graceful [MemoryBroker.Shutdown] instead finishes the
// handlers in flight and reports every message it accepted but did not
// complete in an [UndeliveredError], so delivered plus undelivered always
// equals accepted. Use a durable backend where messages must outlive the
// process.
//
// # Correlation
//
// A correlation ID and W3C trace context put in the publishing context
// ([ContextWithCorrelationID], [ContextWithTraceParent]) travel in the
// message headers to the handler's context, and a handler that publishes
// with its context passes them on, adding the handled message's ID as the
// causation ID. A saga or a trace can so be followed across services with
// no code in the handlers.
//
// # Usage
//
//	b, _ := pubsub.NewMemoryBroker(pubsub.MemoryConfig{})
//	defer b.Close()
//
//	r, _ := pubsub.NewRouter(b, pubsub.RouterConfig{})
//	r.Use(pubsub.Recover(), pubsub.Correlation())
//	r.Handle("billing", "orders.created", billOrder, pubsub.SubscribeConfig{
//		Group:           "billing",
//		Concurrency:     4,
//		DeadLetterTopic: "dead.billing",
//	})
//	go r.Run(ctx) // until ctx ends, then a graceful shutdown
//	<-r.Ready()
//
//	m, _ := pubsub.Marshal(nil, OrderCreated{ID: "o-1"})
//	m.Key = "o-1"
//	err := b.Publish(ctx, "orders.created", m)
//
// Topics are dot-separated tokens; patterns may use "*" for one token and
// a trailing ">" for one or more (see [ValidatePattern] and [Match]).
package pubsub
