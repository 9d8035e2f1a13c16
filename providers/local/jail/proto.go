package jail

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"
)

// The control protocol: one SOCK_SEQPACKET connection per request, one JSON
// object per packet, the command's stdio passed as file descriptors
// (SCM_RIGHTS) so that output flows straight from the command to the server
// and nothing is buffered in PID 1.

const (
	opRun      = "run"      // start a command; replies "started" then its exit
	opKill     = "kill"     // on a run connection: kill the command's whole tree
	opInfo     = "info"     // describe the jail (for Attach)
	opShutdown = "shutdown" // end PID 1 and so the whole jail
	opSignal   = "signal"   // signal a running command (on its run connection, or by pid)
)

// maxPacket bounds one request (argv and env included).
const maxPacket = 1 << 20

type request struct {
	Op   string   `json:"op"`
	Argv []string `json:"argv,omitempty"`
	Cwd  string   `json:"cwd,omitempty"`
	Env  []string `json:"env,omitempty"`
	// Which of stdin, stdout, stderr follow as descriptors, in that order;
	// the missing ones are /dev/null.
	Stdio [3]bool `json:"stdio"`
	// For opSignal: the signal, and (on a connection of its own) the
	// command's pid as Started reported it.
	Signal int `json:"signal,omitempty"`
	Pid    int `json:"pid,omitempty"`
}

type reply struct {
	Error   string    `json:"error,omitempty"`
	Started bool      `json:"started,omitempty"`
	Pid     int       `json:"pid,omitempty"` // with Started: the command's pid in the jail
	Exited  bool      `json:"exited,omitempty"`
	Code    int       `json:"code"`
	Signal  int       `json:"signal,omitempty"`
	Info    *infoBody `json:"info,omitempty"`
}

type infoBody struct {
	Isolation Isolation  `json:"isolation"`
	Config    initConfig `json:"config"`
}

// initConfig is what the server tells PID 1 through a pipe (never argv or
// the environment, which the sandbox could read).
type initConfig struct {
	Dir     string `json:"dir"`
	Network bool   `json:"network"`
	Limits  Limits `json:"limits"`
	Level   Level  `json:"level"`
	// HostUID is the host uid the sandbox's root is. CmdUID, when set, is
	// the uid commands run as where there is no user namespace.
	HostUID      int      `json:"host_uid"`
	CmdUID       int      `json:"cmd_uid,omitempty"`
	Tree         bool     `json:"tree,omitempty"` // the directory's mount comes as a descriptor`
	Cgroups      []string `json:"cgroups,omitempty"`
	LimitsReport string   `json:"limits_report"`
}

// readyReport is what PID 1 sends on its control channel: Waiting once its
// runtime is up, then the outcome of its set-up.
type readyReport struct {
	Waiting   bool      `json:"waiting,omitempty"`
	Error     string    `json:"error,omitempty"`
	Isolation Isolation `json:"isolation"`
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only our own plain structs are marshalled
	}
	return b
}

func dial(socket string) (*net.UnixConn, error) {
	addr, done, err := socketAddr(socket)
	if err != nil {
		return nil, fmt.Errorf("jail: reaching PID 1 at %s: %w (is the sandbox still running?)", socket, err)
	}
	defer done()
	conn, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: addr, Net: "unixpacket"})
	if err != nil {
		return nil, fmt.Errorf("jail: reaching PID 1 at %s: %w (is the sandbox still running?)", socket, err)
	}
	return conn, nil
}

// replyBufs recycles reply buffers: every command reads two replies.
var replyBufs = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

// readReply reads one packet and decodes it.
func readReply(conn *net.UnixConn, r *reply) error {
	bp := replyBufs.Get().(*[]byte)
	defer replyBufs.Put(bp)
	buf := *bp
	n, _, _, _, err := conn.ReadMsgUnix(buf, nil)
	if err != nil {
		return err
	}
	if n == 0 {
		return errors.New("PID 1 closed the connection")
	}
	*r = reply{}
	if err := json.Unmarshal(buf[:n], r); err != nil {
		return fmt.Errorf("PID 1 sent a malformed reply: %w", err)
	}
	if r.Error != "" {
		return errors.New(r.Error)
	}
	return nil
}

func roundTrip(conn *net.UnixConn, req request, r *reply) error {
	if _, _, err := conn.WriteMsgUnix(mustJSON(req), nil, nil); err != nil {
		return err
	}
	return readReply(conn, r)
}

// socketAddr gives a path for socket that fits a Unix socket address (108
// bytes): a long one is reached through a descriptor of its directory, so
// that a deep state directory works. Call done once bound or connected.
func socketAddr(socket string) (addr string, done func(), err error) {
	if len(socket) < len(unix.RawSockaddrUnix{}.Path) {
		return socket, func() {}, nil
	}
	fd, err := unix.Open(filepath.Dir(socket), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", nil, err
	}
	addr = fmt.Sprintf("/proc/self/fd/%d/%s", fd, filepath.Base(socket))
	if len(addr) >= len(unix.RawSockaddrUnix{}.Path) {
		unix.Close(fd)
		return "", nil, fmt.Errorf("socket name %q is too long", filepath.Base(socket))
	}
	return addr, func() { unix.Close(fd) }, nil
}
