//go:build !linux

package live

import "syscall"

// Without epoll every app connection has a reader goroutine (appReader).
type poller struct{}

func (p *Process) pollApp(*appConn)       {}
func (pl *poller) watch(*appConn)         {}
func (pl *poller) closed(*appConn)        {}
func (cs *conns) startPollers() []*poller { return nil }

// writeNonBlocking takes nothing here: every flush goes to a writer
// goroutine, which is correct everywhere (only slower).
func writeNonBlocking(syscall.RawConn, []byte) (int, error) { return 0, nil }
