// Package natsdeps implements zzim's queue and registry on NATS JetStream
// (nats.go jetstream), and starts an embedded NATS server for `zzim up`.
//
// Queue: one stream per mq stream name, file storage, a 2-minute duplicate
// window (publish dedup by Nats-Msg-Id), durable pull consumers with
// explicit acks and AckWait; a delivery not acked in time is redelivered.
// Registry: a KV bucket whose bucket TTL is the slot TTL and which has
// LimitMarkerTTL set, so a key that is not refreshed expires and watchers
// see the expiry (without LimitMarkerTTL they would not).
//
// Replication: on a JetStream cluster the streams and the bucket are
// created with Options.Replicas copies (ReplicasFor: three when the URL
// lists three servers or more, else one), so losing one node of three
// loses nothing acknowledged: a publish is acknowledged once a quorum has
// stored it.
package natsdeps

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/zzim/zzim/system/live"
	"github.com/zzim/zzim/system/mq"
	"github.com/zzim/zzim/system/node"
)

// ViewRefreshDefault is how often Watch repeats every role's view.
const ViewRefreshDefault = 5 * time.Second

// RegistryBucket is the KV bucket of slot keys ("<role>.<slot>").
const RegistryBucket = "zzim_registry"

// StartEmbedded runs a NATS server with JetStream on 127.0.0.1 (port 0 picks
// one) storing in dir, fsyncing every write (sync_interval: always: Jepsen
// showed the default lazy fsync loses acknowledged messages).
func StartEmbedded(dir string, port int) (*server.Server, string, error) {
	if port == 0 {
		port = -1
	}
	opts := &server.Options{
		Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: dir,
		SyncAlways: true, NoLog: true, NoSigs: true,
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, "", fmt.Errorf("nats: new server: %w", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, "", errors.New("nats: embedded server not ready after 10s")
	}
	return s, s.ClientURL(), nil
}

// Deps holds one NATS connection and the queue and registry on it.
type Deps struct {
	nc          *nats.Conn
	js          jetstream.JetStream
	kv          jetstream.KeyValue
	regTTL      time.Duration
	replicas    int
	ackWait     time.Duration
	viewRefresh time.Duration
	mu          sync.Mutex
	consumer    map[string]jetstream.Consumer
	// acks carries async publishes' futures, in publish order, to the one
	// goroutine that waits for them (acks come back in order).
	acks chan pendingAck
	stop chan struct{}
}

// pendingAck is an async publish waiting for its ack.
type pendingAck struct {
	f    jetstream.PubAckFuture
	done func(error)
}

// Async publish bounds.
const (
	// PublishAsyncMaxPending bounds publishes awaiting their ack; past it
	// PublishAsync stalls briefly, then fails (the caller's error path).
	PublishAsyncMaxPending = 4096
	// PublishAsyncTimeout: an ack not back by then fails the publish with
	// an unknown outcome (the msgID dedups the caller's retry).
	PublishAsyncTimeout = 2 * time.Second
)

// Options of Connect.
type Options struct {
	// RegistryTTL is how long a slot key lives without a heartbeat.
	RegistryTTL time.Duration
	// AckWait overrides the consumers' AckWait (mq defaults otherwise).
	AckWait time.Duration
	// ViewRefresh: how often Watch repeats unchanged views (ViewRefreshDefault if 0).
	ViewRefresh time.Duration
	Name        string
	// Replicas is the streams' and the registry bucket's replica count
	// (0: ReplicasFor(url)). An existing stream is updated to it.
	Replicas int
}

// ReplicasMax is the replica count on a cluster: a quorum of two of three
// survives one node's loss; more copies would only slow every write.
const ReplicasMax = 3

// ReplicasFor is the default replica count for a URL list: ReplicasMax when
// it names that many servers or more (a cluster given whole, as zzim's
// services are), else 1. A cluster reached through one URL is not seen as
// one: set Options.Replicas.
func ReplicasFor(url string) int {
	n := 0
	for _, u := range strings.Split(url, ",") {
		if strings.TrimSpace(u) != "" {
			n++
		}
	}
	if n >= ReplicasMax {
		return ReplicasMax
	}
	return 1
}

// Connect dials url and creates (or updates) the streams and the registry bucket.
func Connect(ctx context.Context, url string, o Options) (*Deps, error) {
	if o.RegistryTTL == 0 {
		o.RegistryTTL = node.RegistryTTLDefault
	}
	if o.ViewRefresh == 0 {
		o.ViewRefresh = ViewRefreshDefault
	}
	if o.Replicas == 0 {
		o.Replicas = ReplicasFor(url)
	}
	nc, err := nats.Connect(url, nats.Name(o.Name), nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond))
	if err != nil {
		return nil, fmt.Errorf("nats: connect %s: %w", url, err)
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(PublishAsyncMaxPending),
		jetstream.WithPublishAsyncTimeout(PublishAsyncTimeout))
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("nats: jetstream: %w", err)
	}
	d := &Deps{nc: nc, js: js, regTTL: o.RegistryTTL, replicas: o.Replicas, ackWait: o.AckWait, viewRefresh: o.ViewRefresh, consumer: map[string]jetstream.Consumer{},
		acks: make(chan pendingAck, PublishAsyncMaxPending), stop: make(chan struct{})}
	if err := d.setup(ctx); err != nil {
		nc.Close()
		return nil, err
	}
	go d.waitAcks()
	return d, nil
}

func (d *Deps) setup(ctx context.Context) error {
	streams := map[string][]string{
		mq.StreamOffline:  {mq.OfflinePrefix + ">"},
		mq.StreamPlatform: {mq.PlatformPrefix + ">"},
		mq.StreamEvents:   {mq.EventSent},
	}
	for _, name := range []string{mq.StreamOffline, mq.StreamPlatform, mq.StreamEvents} {
		_, err := d.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
			Name: name, Subjects: streams[name], Storage: jetstream.FileStorage,
			Duplicates: mq.DedupWindow, Retention: jetstream.WorkQueuePolicy, MaxAge: 7 * 24 * time.Hour,
			Replicas: d.replicas,
		})
		if err != nil {
			return fmt.Errorf("nats: stream %s: %w", name, err)
		}
	}
	kv, err := d.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: RegistryBucket, History: 1, TTL: d.regTTL, LimitMarkerTTL: d.regTTL,
		Storage: jetstream.FileStorage, Replicas: d.replicas,
	})
	if err != nil {
		return fmt.Errorf("nats: registry bucket: %w", err)
	}
	d.kv = kv
	return nil
}

// Close closes the connection; async publishes still waiting fail.
func (d *Deps) Close() {
	d.mu.Lock()
	select {
	case <-d.stop:
	default:
		close(d.stop)
	}
	d.mu.Unlock()
	d.nc.Close()
}

var _ live.Queue = (*Deps)(nil)
var _ live.AsyncQueue = (*Deps)(nil)
var _ live.Registry = (*Deps)(nil)

// Publish stores data on subject; a repeated msgID within the duplicate
// window is stored once.
func (d *Deps) Publish(ctx context.Context, subject string, data []byte, msgID string) error {
	var opts []jetstream.PublishOpt
	if msgID != "" {
		opts = append(opts, jetstream.WithMsgID(msgID))
	}
	if _, err := d.js.Publish(ctx, subject, data, opts...); err != nil {
		return fmt.Errorf("nats: publish %s: %w", subject, err)
	}
	return nil
}

// PublishAsync stores data on subject without waiting for the ack: done
// is called with the outcome by the ack waiter. JetStream persists
// concurrent publishes together, so many in flight cost far less per
// message than one synchronous publish after another.
func (d *Deps) PublishAsync(subject string, data []byte, msgID string, done func(error)) error {
	var opts []jetstream.PublishOpt
	if msgID != "" {
		opts = append(opts, jetstream.WithMsgID(msgID))
	}
	f, err := d.js.PublishAsync(subject, data, opts...)
	if err != nil {
		return fmt.Errorf("nats: publish async %s: %w", subject, err)
	}
	select {
	case d.acks <- pendingAck{f: f, done: done}:
	case <-d.stop:
		done(errors.New("nats: closed"))
	}
	return nil
}

// waitAcks reports each async publish's outcome, in publish order.
func (d *Deps) waitAcks() {
	for {
		select {
		case a := <-d.acks:
			select {
			case <-a.f.Ok():
				a.done(nil)
			case err := <-a.f.Err():
				a.done(fmt.Errorf("nats: publish %s: %w", a.f.Msg().Subject, err))
			case <-d.stop:
				a.done(errors.New("nats: closed"))
			}
		case <-d.stop:
			for {
				select {
				case a := <-d.acks:
					a.done(errors.New("nats: closed"))
				default:
					return
				}
			}
		}
	}
}

// Consume reads the durable consumer c until ctx ends. Processes consuming
// the same c share its messages.
func (d *Deps) Consume(ctx context.Context, c mq.Consumer, fn func(live.QueueDelivery)) error {
	ackWait := c.AckWait
	if d.ackWait != 0 {
		ackWait = d.ackWait
	}
	cons, err := d.js.CreateOrUpdateConsumer(ctx, c.Stream, jetstream.ConsumerConfig{
		Durable: c.Name, FilterSubject: c.Filter, AckPolicy: jetstream.AckExplicitPolicy,
		AckWait: ackWait, MaxDeliver: mq.MaxDeliver, MaxAckPending: 4096,
	})
	if err != nil {
		return fmt.Errorf("nats: consumer %s: %w", c.Name, err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		md, _ := m.Metadata()
		n := 1
		if md != nil {
			n = int(md.NumDelivered)
		}
		fn(live.QueueDelivery{
			Subject: m.Subject(), Data: m.Data(), MsgID: m.Headers().Get(jetstream.MsgIDHeader), NumDelivered: n,
			Ack: m.Ack, Nak: m.NakWithDelay,
		})
	})
	if err != nil {
		return fmt.Errorf("nats: consume %s: %w", c.Name, err)
	}
	<-ctx.Done()
	cc.Stop()
	return ctx.Err()
}

func slotKey(a node.Addr) string { return string(a.Role) + "." + strconv.Itoa(a.Slot) }

// Put creates or refreshes a slot's key; the bucket TTL expires it unless refreshed.
func (d *Deps) Put(ctx context.Context, a node.Addr, _ time.Duration) error {
	_, err := d.kv.Put(ctx, slotKey(a), []byte(strconv.FormatInt(time.Now().UnixMilli(), 10)))
	if err != nil {
		return fmt.Errorf("nats: registry put %s: %w", a, err)
	}
	return nil
}

// Delete removes a slot's key (graceful shutdown).
func (d *Deps) Delete(ctx context.Context, a node.Addr) error {
	if err := d.kv.Delete(ctx, slotKey(a)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("nats: registry delete %s: %w", a, err)
	}
	return nil
}

// Watch reports each role's alive slots on every change, expiry included.
func (d *Deps) Watch(ctx context.Context, slots map[node.Role]int, fn func(node.View)) error {
	w, err := d.kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("nats: registry watch: %w", err)
	}
	defer w.Stop()
	alive := map[node.Role][]bool{}
	for _, r := range node.Roles {
		if slots[r] > 0 {
			alive[r] = make([]bool, slots[r])
		}
	}
	initial := true
	// Views are also repeated every ViewRefresh, unchanged or not: a caller
	// that marked a slot dead on its own (timeouts across a partition that
	// left the registry untouched) learns from the registry again that the
	// slot is alive, and fails back. Without it, such a caller keeps the
	// slot's users elsewhere until the slot's key happens to change (found by
	// the chaos harness's partition-entry-logic).
	refresh := time.NewTicker(d.viewRefresh)
	defer refresh.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-refresh.C:
			if initial {
				continue
			}
			for _, r := range node.Roles {
				if a := alive[r]; a != nil {
					fn(node.View{Role: r, Alive: append([]bool(nil), a...)})
				}
			}
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("nats: registry watch closed")
			}
			if e == nil { // end of the initial values
				initial = false
				for _, r := range node.Roles {
					if a := alive[r]; a != nil {
						fn(node.View{Role: r, Alive: append([]bool(nil), a...)})
					}
				}
				continue
			}
			role, slot, ok := parseKey(e.Key())
			if !ok || alive[role] == nil {
				continue
			}
			if slot >= len(alive[role]) { // scale out past the configured slots
				grown := make([]bool, slot+1)
				copy(grown, alive[role])
				alive[role] = grown
			}
			now := e.Operation() == jetstream.KeyValuePut
			if alive[role][slot] == now {
				continue
			}
			alive[role][slot] = now
			if !initial {
				fn(node.View{Role: role, Alive: append([]bool(nil), alive[role]...)})
			}
		}
	}
}

func parseKey(k string) (node.Role, int, bool) {
	i := strings.LastIndexByte(k, '.')
	if i <= 0 {
		return "", 0, false
	}
	n, err := strconv.Atoi(k[i+1:])
	if err != nil {
		return "", 0, false
	}
	return node.Role(k[:i]), n, true
}
