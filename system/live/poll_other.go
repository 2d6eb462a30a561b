//go:build !linux

package live

// Without epoll every app connection has a reader goroutine (appReader).
type poller struct{}

func (p *Process) pollApp(*appConn)       {}
func (pl *poller) watch(*appConn)         {}
func (pl *poller) closed(*appConn)        {}
func (cs *conns) startPollers() []*poller { return nil }
