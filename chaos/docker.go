package chaos

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
	tcnetwork "github.com/testcontainers/testcontainers-go/network"
	"github.com/testcontainers/testcontainers-go/wait"
)

// LabelRun marks every container and network of one chaos run with the
// run's id, so Cleanup can find them even after a crash of the harness.
const LabelRun = "zzim.chaos.run"

// startupTimeout bounds one container's start until its ready line.
const startupTimeout = 60 * time.Second

// removeTimeout bounds the teardown of one run.
const removeTimeout = 60 * time.Second

// docker is the Docker client for what testcontainers does not do: kill,
// pause, network disconnect and connect, forced removal.
type docker struct {
	cli *testcontainers.DockerClient
}

func newDocker(ctx context.Context) (d *docker, err error) {
	defer func() {
		// The client constructor panics on some broken configurations.
		if r := recover(); r != nil {
			err = fmt.Errorf("docker client: %v", r)
		}
	}()
	cli, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	pingCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := cli.Ping(pingCtx, client.PingOptions{}); err != nil {
		cli.Close()
		return nil, fmt.Errorf("docker ping: %w", err)
	}
	return &docker{cli: cli}, nil
}

func (d *docker) close() { d.cli.Close() }

// requireImages fails unless every image is present locally: nothing is
// ever pulled.
func (d *docker) requireImages(ctx context.Context, images ...string) error {
	for _, img := range images {
		if _, err := d.cli.ImageInspect(ctx, img); err != nil {
			return fmt.Errorf("image %s not present locally (build it with docker/build.sh): %w", img, err)
		}
	}
	return nil
}

func (d *docker) kill(ctx context.Context, id string) error {
	if _, err := d.cli.ContainerKill(ctx, id, client.ContainerKillOptions{Signal: "KILL"}); err != nil {
		return fmt.Errorf("kill: %w", err)
	}
	return d.waitExited(ctx, id)
}

// waitExited polls until the container is no longer running.
func (d *docker) waitExited(ctx context.Context, id string) error {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		res, err := d.cli.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
		if err != nil {
			return fmt.Errorf("inspect: %w", err)
		}
		if res.Container.State == nil || !res.Container.State.Running {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return errors.New("container still running 10s after SIGKILL")
}

func (d *docker) start(ctx context.Context, id string) error {
	if _, err := d.cli.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	return nil
}

func (d *docker) pause(ctx context.Context, id string) error {
	if _, err := d.cli.ContainerPause(ctx, id, client.ContainerPauseOptions{}); err != nil {
		return fmt.Errorf("pause: %w", err)
	}
	return nil
}

func (d *docker) unpause(ctx context.Context, id string) error {
	if _, err := d.cli.ContainerUnpause(ctx, id, client.ContainerUnpauseOptions{}); err != nil {
		return fmt.Errorf("unpause: %w", err)
	}
	return nil
}

func (d *docker) disconnect(ctx context.Context, networkID, id string) error {
	if _, err := d.cli.NetworkDisconnect(ctx, networkID, client.NetworkDisconnectOptions{Container: id, Force: true}); err != nil {
		return fmt.Errorf("network disconnect: %w", err)
	}
	return nil
}

// connect reattaches a container with its aliases: without them the
// others could not resolve its name any more.
func (d *docker) connect(ctx context.Context, networkID, id string, aliases []string) error {
	if _, err := d.cli.NetworkConnect(ctx, networkID, client.NetworkConnectOptions{
		Container: id, EndpointConfig: &network.EndpointSettings{Aliases: aliases},
	}); err != nil {
		return fmt.Errorf("network connect: %w", err)
	}
	return nil
}

// removeRun force-removes every container, then every network, labelled
// with run (all runs when run is ""). It returns what it removed.
func (d *docker) removeRun(ctx context.Context, run string) (containers, networks int, err error) {
	label := LabelRun
	if run != "" {
		label += "=" + run
	}
	cs, err := d.cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: client.Filters{}.Add("label", label)})
	if err != nil {
		return 0, 0, fmt.Errorf("list containers: %w", err)
	}
	var errs []error
	for _, c := range cs.Items {
		if _, err := d.cli.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true}); err != nil {
			errs = append(errs, fmt.Errorf("remove container %s: %w", c.ID[:12], err))
			continue
		}
		containers++
	}
	ns, err := d.cli.NetworkList(ctx, client.NetworkListOptions{Filters: client.Filters{}.Add("label", label)})
	if err != nil {
		return containers, 0, errors.Join(append(errs, fmt.Errorf("list networks: %w", err))...)
	}
	for _, n := range ns.Items {
		if _, err := d.cli.NetworkRemove(ctx, n.ID, client.NetworkRemoveOptions{}); err != nil {
			errs = append(errs, fmt.Errorf("remove network %s: %w", n.Name, err))
			continue
		}
		networks++
	}
	return containers, networks, errors.Join(errs...)
}

// countRun counts the containers and networks labelled with run: after
// removeRun, anything left is a leak.
func (d *docker) countRun(ctx context.Context, run string) (containers, networks int, err error) {
	f := client.Filters{}.Add("label", LabelRun+"="+run)
	cs, err := d.cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		return 0, 0, fmt.Errorf("list containers: %w", err)
	}
	ns, err := d.cli.NetworkList(ctx, client.NetworkListOptions{Filters: f})
	if err != nil {
		return len(cs.Items), 0, fmt.Errorf("list networks: %w", err)
	}
	return len(cs.Items), len(ns.Items), nil
}

// containerSpec is one container of the environment.
type containerSpec struct {
	name    string // also its alias on the private network
	image   string
	cmd     []string
	env     map[string]string
	publish []string // container ports published on 127.0.0.1 at fixed host ports
	ready   wait.Strategy
}

// started is a running container of the environment.
type started struct {
	spec  containerSpec
	ctr   *testcontainers.DockerContainer
	id    string
	hosts map[string]string // container port → 127.0.0.1:host port
}

// runContainer starts spec on the private network. Published ports get a
// fixed host port picked now, so a restarted container keeps its address
// (Docker gives an ephemeral binding a new port on every start).
func runContainer(ctx context.Context, nw *testcontainers.DockerNetwork, run string, spec containerSpec) (*started, error) {
	hosts := map[string]string{}
	bindings := network.PortMap{}
	for _, p := range spec.publish {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		cp, err := network.ParsePort(p)
		if err != nil {
			return nil, fmt.Errorf("%s: port %s: %w", spec.name, p, err)
		}
		bindings[cp] = []network.PortBinding{{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: strconv.Itoa(port)}}
		hosts[p] = "127.0.0.1:" + strconv.Itoa(port)
	}
	opts := []testcontainers.ContainerCustomizer{
		testcontainers.WithName("zzim-chaos-" + run + "-" + spec.name),
		testcontainers.WithLabels(map[string]string{LabelRun: run}),
		tcnetwork.WithNetwork([]string{spec.name}, nw),
		testcontainers.WithExposedPorts(spec.publish...),
		testcontainers.WithHostConfigModifier(func(hc *container.HostConfig) {
			hc.PortBindings = bindings
			init := true
			hc.Init = &init // a clean PID 1: teardown never waits for a stop timeout
		}),
	}
	if len(spec.cmd) > 0 {
		opts = append(opts, testcontainers.WithCmd(spec.cmd...))
	}
	if len(spec.env) > 0 {
		opts = append(opts, testcontainers.WithEnv(spec.env))
	}
	if spec.ready != nil {
		opts = append(opts, testcontainers.WithWaitStrategy(spec.ready))
	}
	ctr, err := testcontainers.Run(ctx, spec.image, opts...)
	if err != nil {
		return nil, fmt.Errorf("start %s (%s): %w", spec.name, spec.image, err)
	}
	return &started{spec: spec, ctr: ctr, id: ctr.GetContainerID(), hosts: hosts}, nil
}

// freePort asks the kernel for a loopback port nothing listens on now.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// logWait waits for a log line.
func logWait(line string) wait.Strategy {
	return wait.ForLog(line).WithStartupTimeout(startupTimeout)
}
