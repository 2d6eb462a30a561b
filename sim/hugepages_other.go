//go:build !linux

package sim

// adviseHugePages does nothing where there is no madvise policy to ask.
func adviseHugePages(int64) (stop func()) { return func() {} }
