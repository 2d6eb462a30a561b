package node

import (
	"time"

	"github.com/zzim/zzim/system/wire"
)

// Event is an input to a node. The driver stamps nothing on it: time is
// env.Now(). One exception: ClientConnect.Accepted, when the transport
// took a connection the node may only see much later.
type Event interface{ isEvent() }

// Recv: an internal message from another instance.
type Recv struct {
	From Addr
	Msg  Message
}

// LinkUp / LinkDown: the internal link to a peer changed state. LinkDown is
// also raised when a Send could not be queued.
type LinkUp struct{ Peer Addr }
type LinkDown struct{ Peer Addr }

// ClientConnect: an app opened a TCP connection to entry.
type ClientConnect struct {
	Conn   ConnID
	Remote string
	// Accepted is when the transport accepted the connection, on the
	// node's clock. A paused or busy node handles the event later; entry
	// counts its login deadline from here. Zero means now.
	Accepted time.Time
}

// ClientFrame: one decoded app frame.
type ClientFrame struct {
	Conn  ConnID
	Frame wire.Frame
}

// ClientDisconnect: the connection is gone (closed by either side).
type ClientDisconnect struct {
	Conn   ConnID
	Reason string
}

// HTTPRequest: one HTTP request to httpentry; answer with Env.HTTPReply.
// The driver has already bounded header and body sizes.
type HTTPRequest struct {
	Conn   ConnID
	Method string
	Path   string
	Query  map[string]string
	Header map[string]string // canonical names; only Authorization and X-Platform-Key are passed
	Body   []byte
}

// HTTPCanceled: the HTTP client went away before the reply.
type HTTPCanceled struct{ Conn ConnID }

// Timer fired.
type Timer struct {
	ID  TimerID
	Tag any
}

// Completion of a Store, Presence, Publish or Registry request.
type Completion struct {
	Req     ReqID
	Outcome Outcome
	Err     error // set when Outcome != OK
	// Exactly one of these is set for OK outcomes, by request kind.
	Store    *StoreResult
	Presence *PresenceResult
}

// Delivery: a message from a durable queue consumer.
type Delivery struct {
	ID           DeliveryID
	Subject      string
	Data         []byte
	MsgID        string
	NumDelivered int // 1 on first delivery
}

// View: the registry's current view of one role's slots. Views reach
// different nodes at different times.
type View struct {
	Role  Role
	Alive []bool // index = slot
}

func (Recv) isEvent()             {}
func (LinkUp) isEvent()           {}
func (LinkDown) isEvent()         {}
func (ClientConnect) isEvent()    {}
func (ClientFrame) isEvent()      {}
func (ClientDisconnect) isEvent() {}
func (HTTPRequest) isEvent()      {}
func (HTTPCanceled) isEvent()     {}
func (Timer) isEvent()            {}
func (Completion) isEvent()       {}
func (Delivery) isEvent()         {}
func (View) isEvent()             {}
