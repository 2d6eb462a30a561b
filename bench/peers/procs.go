package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// serverCore and loadCore: the server under test and its dependencies
// run on one core, the load generator on the other, for both systems, so
// a rate is what one server core sustains.
const (
	serverCore = "0"
	loadCore   = "1"
)

// proc is a child process started by the benchmark (a server or one of
// its dependencies), pinned to serverCore.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	// container names the docker container the process runs in (a
	// dependency from a local zzim/* image when its Debian package is not
	// installed on the host); cmd is then the attached docker client, and
	// hostPid the server's own pid, which the CPU and run-queue figures read.
	container string
	hostPid   int
	exited    chan struct{} // closed when the docker client returns
}

// pid is the server process's pid on the host.
func (p *proc) pid() int {
	if p.hostPid > 0 {
		return p.hostPid
	}
	return p.cmd.Process.Pid
}

// startProc runs argv under `taskset -c serverCore`, its output in
// dir/name.log. taskset execs the command, so the child's pid is the
// server's.
func startProc(dir, name string, argv []string, env []string) (*proc, error) {
	logPath := filepath.Join(dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("%s log: %w", name, err)
	}
	cmd := exec.Command("taskset", append([]string{"-c", serverCore}, argv...)...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	// Its own process group: a Ctrl-C to the benchmark reaches the
	// benchmark, which stops its children in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	f.Close()
	return &proc{name: name, cmd: cmd, log: logPath}, nil
}

// stop sends SIGTERM, then SIGKILL after grace, to this child only.
func (p *proc) stop(grace time.Duration) {
	if p == nil || p.cmd.Process == nil {
		return
	}
	if p.container != "" {
		p.stopContainer(grace)
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-done
	}
}

func (p *proc) alive() bool {
	if p.container != "" {
		select {
		case <-p.exited:
			return false
		default:
			return syscall.Kill(p.pid(), 0) == nil
		}
	}
	return p.cmd.ProcessState == nil && syscall.Kill(p.pid(), 0) == nil
}

// tail is the end of the child's log, for error messages.
func (p *proc) tail() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 1500 {
		b = b[len(b)-1500:]
	}
	return strings.TrimSpace(string(b))
}

// clockTick is USER_HZ, the unit of utime and stime in /proc/PID/stat:
// 100 on every Linux architecture Go supports.
const clockTick = 10 * time.Millisecond

// cpuOf is a process's user+system CPU time so far (all its threads).
func cpuOf(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces: fields count from after ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("malformed stat")
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, errors.New("short stat")
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64) // field 14
	st, err2 := strconv.ParseInt(f[12], 10, 64) // field 15
	if err1 != nil || err2 != nil {
		return 0, errors.New("malformed stat times")
	}
	return time.Duration(ut+st) * clockTick, nil
}

// runqWait is the time a process's threads spent runnable but waiting
// for a CPU (the second field of /proc/PID/task/*/schedstat; threads that
// exited are not counted). On a shared machine it says whether latency
// came from the server or from waiting for its core.
func runqWait(pid int) time.Duration {
	dir := "/proc/" + strconv.Itoa(pid) + "/task"
	tasks, _ := os.ReadDir(dir)
	var sum int64
	for _, t := range tasks {
		b, err := os.ReadFile(dir + "/" + t.Name() + "/schedstat")
		if err != nil {
			continue
		}
		f := strings.Fields(string(b))
		if len(f) < 2 {
			continue
		}
		if v, err := strconv.ParseInt(f[1], 10, 64); err == nil {
			sum += v
		}
	}
	return time.Duration(sum)
}

func runqWaitOf(ps []*proc) time.Duration {
	var d time.Duration
	for _, p := range ps {
		d += runqWait(p.pid())
	}
	return d
}

// selfCPU is this process's CPU (the load generator).
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuSample is the CPU of each server-side process at one instant.
type cpuSample map[string]time.Duration

func sampleCPU(ps []*proc) cpuSample {
	s := cpuSample{}
	for _, p := range ps {
		if d, err := cpuOf(p.pid()); err == nil {
			s[p.name] = d
		}
	}
	return s
}

// freePorts finds n free loopback TCP ports (closed again before use: a
// race with other programs is possible but rare, and shows as a failed start).
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// freePair finds a port p with p and p+1 free on loopback.
func freePair() (int, error) {
	for range 100 {
		ports, err := freePorts(1)
		if err != nil {
			return 0, err
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(ports[0]+1))
		if err == nil {
			l.Close()
			return ports[0], nil
		}
	}
	return 0, errors.New("no two free ports in a row")
}

// waitTCP waits until addr accepts a connection.
func waitTCP(ctx context.Context, addr string, p *proc) error {
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if !p.alive() {
			return fmt.Errorf("%s exited: %s", p.name, p.tail())
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %s not listening: %w\n%s", p.name, addr, ctx.Err(), p.tail())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// run runs a short command to completion (builds, database setup).
func run(dir string, env []string, argv ...string) error {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w\n%s", strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// startContainer runs argv in image, attached (its output in
// dir/name.log), with the host's network (it listens on 127.0.0.1 as the
// host's package would: no docker-proxy, no bridge), pinned to serverCore
// with --cpuset-cpus as taskset pins the others, and dir mounted at the
// same path (data on the host's disk, not the image's overlay).
func startContainer(ctx context.Context, dir, name, image string, argv []string) (*proc, error) {
	cname := fmt.Sprintf("peers-%s-%d-%d", name, os.Getpid(), time.Now().UnixNano()%1e9)
	logPath := filepath.Join(dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("%s log: %w", name, err)
	}
	args := append([]string{"run", "--rm", "--name", cname, "--network", "host", "--cpuset-cpus", serverCore,
		"-v", dir + ":" + dir, "--entrypoint", argv[0], image}, argv[1:]...)
	cmd := exec.Command("docker", args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	f.Close()
	p := &proc{name: name, cmd: cmd, log: logPath, container: cname, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.exited) }()
	for {
		out, err := exec.Command("docker", "inspect", "-f", "{{.State.Pid}}", cname).Output()
		if err == nil {
			if pid, _ := strconv.Atoi(strings.TrimSpace(string(out))); pid > 0 {
				p.hostPid = pid
				return p, nil
			}
		}
		select {
		case <-p.exited:
			p.stop(5 * time.Second)
			return nil, fmt.Errorf("%s exited: %s", name, p.tail())
		case <-ctx.Done():
			p.stop(5 * time.Second)
			return nil, fmt.Errorf("%s: container not running: %w\n%s", name, ctx.Err(), p.tail())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// stopContainer stops the container (SIGTERM, then SIGKILL after grace)
// and removes it whatever happened (--rm removes it too when it stops).
func (p *proc) stopContainer(grace time.Duration) {
	secs := strconv.Itoa(max(1, int(grace/time.Second)))
	_ = exec.Command("docker", "stop", "-t", secs, p.container).Run()
	_ = exec.Command("docker", "rm", "-f", p.container).Run()
	select {
	case <-p.exited:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}
