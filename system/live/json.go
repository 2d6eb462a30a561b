package live

import (
	"github.com/zzim/zzim/system/wire"
)

func jsonError(code wire.ErrorCode, msg string) ([]byte, error) {
	return wire.MarshalJSON(&wire.Error{Code: code, Message: msg})
}
