package live

import (
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/zzim/zzim/system/wire"
)

var jsonOut = protojson.MarshalOptions{UseProtoNames: true}

func jsonError(code wire.ErrorCode, msg string) ([]byte, error) {
	return jsonOut.Marshal(&wire.Error{Code: code, Message: msg})
}
