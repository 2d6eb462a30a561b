// Package browsertest drives the web client (package web) in headless
// Chromium against a zzim cluster running in the test process: two tabs
// chat while httpentry is killed and restarted under them.
//
// It needs Debian's chromium package (.ci/run installs it). Without a
// browser the test skips, except under CI=true where it fails. The
// screenshots go to $ZZIM_TEST_OUT, or testdata/out next to this file.
package browsertest
