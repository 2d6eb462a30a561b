// Package client is the reference client: the app's side of the protocol as
// a sans-I/O state machine. The simulator, the chaos harness, the load
// generator and real apps all drive it, and it records the history the
// checkers read (check.Op).
package client

import (
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/zzim/zzim/check"
	"github.com/zzim/zzim/system/wire"
)

// ReqID names one HTTP request of the long-poll transport.
type ReqID uint64

// TimerID names a timer.
type TimerID uint64

// Env is the client's window on the world. One client has at most one TCP
// connection at a time (TCP transport) or any number of HTTP requests in
// flight (long-poll transport).
type Env interface {
	// Now is the true clock: histories record it.
	Now() time.Time
	Rand() *rand.Rand
	Log() *slog.Logger

	// Dial opens a TCP connection to entry address addr (one of
	// Config.Entries). The driver answers with Connected or Disconnected.
	Dial(addr string)
	// Write queues one frame on the open connection.
	Write(f wire.Frame)
	// Hangup closes the connection; the driver answers with Disconnected.
	Hangup()

	// HTTP sends one request to httpentry (Config.HTTP). The driver
	// answers with HTTPResponse; Status 0 means no response (connection
	// failed or timed out): the outcome is unknown.
	HTTP(method, path, token string, body []byte, timeout time.Duration) ReqID

	After(d time.Duration, tag any) TimerID
	Cancel(id TimerID)

	// Record appends one op to the history.
	Record(op check.Op)
}

// Event is an input to the client.
type Event interface{ isClientEvent() }

// Connected: the TCP connection is open.
type Connected struct{}

// Disconnected: the TCP connection closed or could not be opened.
type Disconnected struct{ Reason string }

// FrameIn: one frame from entry.
type FrameIn struct{ Frame wire.Frame }

// HTTPResponse answers Env.HTTP.
type HTTPResponse struct {
	Req    ReqID
	Status int
	Body   []byte
}

// Timer fired.
type Timer struct {
	ID  TimerID
	Tag any
}

func (Connected) isClientEvent()    {}
func (Disconnected) isClientEvent() {}
func (FrameIn) isClientEvent()      {}
func (HTTPResponse) isClientEvent() {}
func (Timer) isClientEvent()        {}
