package wire

import (
	"fmt"

	"google.golang.org/protobuf/proto"
)

// Op identifies a frame's body type. App ops are below OpInternalBase;
// internal ops (between zzim instances) from it up.
type Op uint8

const (
	OpLogin Op = iota + 1
	OpLoginAck
	OpLogout
	OpSend
	OpSendAck
	OpPush
	OpPushAck
	OpSync
	OpSyncResp
	OpConvList
	OpConvListResp
	OpRead
	OpReadAck
	OpHeartbeat
	OpKick
	OpNotice
	OpError
	opAppEnd
)

// OpInternalBase is the first internal op.
const OpInternalBase Op = 64

const (
	OpClientRequest Op = OpInternalBase + iota
	OpClientResponse
	OpPushRequest
	OpPushFailed
	OpKickRequest
	OpSessionClosed
	OpStoreRequest
	OpStoreReply
	OpLinkHello
	opInternalEnd
)

var opNames = map[Op]string{
	OpLogin: "LOGIN", OpLoginAck: "LOGIN_ACK", OpLogout: "LOGOUT", OpSend: "SEND", OpSendAck: "SEND_ACK",
	OpPush: "PUSH", OpPushAck: "PUSH_ACK", OpSync: "SYNC", OpSyncResp: "SYNC_RESP", OpConvList: "CONV_LIST",
	OpConvListResp: "CONV_LIST_RESP", OpRead: "READ", OpReadAck: "READ_ACK", OpHeartbeat: "HEARTBEAT",
	OpKick: "KICK", OpNotice: "NOTICE", OpError: "ERROR",
	OpClientRequest: "CLIENT_REQUEST", OpClientResponse: "CLIENT_RESPONSE", OpPushRequest: "PUSH_REQUEST",
	OpPushFailed: "PUSH_FAILED", OpKickRequest: "KICK_REQUEST", OpSessionClosed: "SESSION_CLOSED",
	OpStoreRequest: "STORE_REQUEST", OpStoreReply: "STORE_REPLY", OpLinkHello: "LINK_HELLO",
}

func (o Op) String() string {
	if s, ok := opNames[o]; ok {
		return s
	}
	return fmt.Sprintf("OP(%d)", uint8(o))
}

// Known reports whether o is an op this build understands.
func (o Op) Known() bool {
	return (o >= OpLogin && o < opAppEnd) || (o >= OpInternalBase && o < opInternalEnd)
}

// IsApp reports whether o belongs to the app protocol.
func (o Op) IsApp() bool { return o >= OpLogin && o < opAppEnd }

// NewBody returns an empty message of the type o carries.
func NewBody(o Op) (proto.Message, error) {
	switch o {
	case OpLogin:
		return &Login{}, nil
	case OpLoginAck:
		return &LoginAck{}, nil
	case OpLogout:
		return &Logout{}, nil
	case OpSend:
		return &Send{}, nil
	case OpSendAck:
		return &SendAck{}, nil
	case OpPush:
		return &Push{}, nil
	case OpPushAck:
		return &PushAck{}, nil
	case OpSync:
		return &Sync{}, nil
	case OpSyncResp:
		return &SyncResp{}, nil
	case OpConvList:
		return &ConvList{}, nil
	case OpConvListResp:
		return &ConvListResp{}, nil
	case OpRead:
		return &Read{}, nil
	case OpReadAck:
		return &ReadAck{}, nil
	case OpHeartbeat:
		return &Heartbeat{}, nil
	case OpKick:
		return &Kick{}, nil
	case OpNotice:
		return &Notice{}, nil
	case OpError:
		return &Error{}, nil
	case OpClientRequest:
		return &ClientRequest{}, nil
	case OpClientResponse:
		return &ClientResponse{}, nil
	case OpPushRequest:
		return &PushRequest{}, nil
	case OpPushFailed:
		return &PushFailed{}, nil
	case OpKickRequest:
		return &KickRequest{}, nil
	case OpSessionClosed:
		return &SessionClosed{}, nil
	case OpStoreRequest:
		return &StoreRequest{}, nil
	case OpStoreReply:
		return &StoreReply{}, nil
	case OpLinkHello:
		return &LinkHello{}, nil
	}
	return nil, fmt.Errorf("%w: %d", ErrUnknownOp, o)
}

// OpOf returns the op that carries m.
func OpOf(m proto.Message) (Op, error) {
	switch m.(type) {
	case *Login:
		return OpLogin, nil
	case *LoginAck:
		return OpLoginAck, nil
	case *Logout:
		return OpLogout, nil
	case *Send:
		return OpSend, nil
	case *SendAck:
		return OpSendAck, nil
	case *Push:
		return OpPush, nil
	case *PushAck:
		return OpPushAck, nil
	case *Sync:
		return OpSync, nil
	case *SyncResp:
		return OpSyncResp, nil
	case *ConvList:
		return OpConvList, nil
	case *ConvListResp:
		return OpConvListResp, nil
	case *Read:
		return OpRead, nil
	case *ReadAck:
		return OpReadAck, nil
	case *Heartbeat:
		return OpHeartbeat, nil
	case *Kick:
		return OpKick, nil
	case *Notice:
		return OpNotice, nil
	case *Error:
		return OpError, nil
	case *ClientRequest:
		return OpClientRequest, nil
	case *ClientResponse:
		return OpClientResponse, nil
	case *PushRequest:
		return OpPushRequest, nil
	case *PushFailed:
		return OpPushFailed, nil
	case *KickRequest:
		return OpKickRequest, nil
	case *SessionClosed:
		return OpSessionClosed, nil
	case *StoreRequest:
		return OpStoreRequest, nil
	case *StoreReply:
		return OpStoreReply, nil
	case *LinkHello:
		return OpLinkHello, nil
	}
	return 0, fmt.Errorf("%w: no op for %T", ErrUnknownOp, m)
}

// Marshal encodes m as a frame body.
func Marshal(m proto.Message) ([]byte, error) { return proto.Marshal(m) }

// EncodeMessage builds a frame for m.
func EncodeMessage(reqID uint32, m proto.Message) (Frame, error) {
	op, err := OpOf(m)
	if err != nil {
		return Frame{}, err
	}
	body, err := proto.Marshal(m)
	if err != nil {
		return Frame{}, fmt.Errorf("wire: marshal %s: %w", op, err)
	}
	if len(body) > BodySizeMax {
		return Frame{}, fmt.Errorf("%w: %s body %d bytes", ErrOversized, op, len(body))
	}
	return Frame{Op: op, ReqID: reqID, Body: body}, nil
}

// DecodeBody parses a frame's body into the message its op names.
func DecodeBody(f Frame) (proto.Message, error) {
	m, err := NewBody(f.Op)
	if err != nil {
		return nil, err
	}
	if err := proto.Unmarshal(f.Body, m); err != nil {
		return nil, fmt.Errorf("%w: %s body: %v", ErrGarbage, f.Op, err)
	}
	return m, nil
}
