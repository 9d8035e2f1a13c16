package daytona

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"mime/multipart"
	"net/http"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
	"github.com/mcp-sandbox/mcp-sandbox/providers/supervisor"
)

// Commands run through the supervisor's helper (its exec mode) where it
// can run: one process between the daemon and the command, which gives
// exact stdout, stderr and exit code through the daemon's line-labelled
// log, and kills everything the command started. The driver puts it in
// the sandbox's /tmp with one upload, started as soon as a sandbox is
// made without holding up the create (commands wait for it), where the
// supervisor also looks for it; the command that runs it first makes it
// executable (a test, no process, once it is), which saves a call on the
// way to a sandbox's first command. Where it cannot run
// (another machine, a noexec /tmp, TMPDIR elsewhere), the shell wrapper
// serves, at the cost of some eight processes per command.

// Whether a sandbox's helper is in place: conn.helper's values.
const (
	helperUnknown int32 = iota
	helperReady
	helperUnusable
)

// helperMachine is the machine Daytona sandboxes run on.
const helperMachine = "x86_64"

// installHelper puts the helper in place unless fresh is false and it is
// already there, and records on c whether commands can use it.
func (p *Provider) installHelper(ctx context.Context, c *conn, fresh bool) {
	name, data, ok := supervisor.HelperFile(helperMachine)
	if !ok {
		c.helper.Store(helperUnusable)
		return
	}
	target := c.helperPath(name)
	if !fresh {
		// Its name is its content's hash: the right size is the right file.
		if fi, err := p.info(ctx, c.id, target); err == nil && fi.Size == int64(len(data)) {
			c.helper.Store(helperReady)
			return
		}
	}
	if err := p.upload(ctx, c, target, data); err != nil {
		p.log.Info("daytona: commands run through the shell wrapper: the helper could not be put in place", "sandbox", c.id, "err", err)
		c.helper.Store(helperUnusable)
		return
	}
	c.helper.Store(helperReady)
}

// upload writes data at the absolute path target through the bulk upload.
func (p *Provider) upload(ctx context.Context, c *conn, target string, data []byte) error {
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	mw.WriteField("files[0].path", target)
	part, _ := mw.CreateFormFile("files[0].file", target)
	part.Write(data)
	mw.Close()
	rctx, cancel := context.WithTimeout(ctx, p.o.RequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, c.base+"/files/bulk-upload", &body)
	if err != nil {
		return err
	}
	p.auth(req)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, err := p.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return errorBody(resp.StatusCode, answer, resp.Header)
	}
	var res struct {
		Files []struct {
			Bytes int64 `json:"bytes"`
		} `json:"files"`
	}
	if err := json.Unmarshal(answer, &res); err != nil || len(res.Files) != 1 || res.Files[0].Bytes != int64(len(data)) {
		return fmt.Errorf("the daemon did not confirm %d bytes written (answer %.200q)", len(data), answer)
	}
	return nil
}

// helperPath is where the helper called name lives in the sandbox, where
// the supervisor looks for it too (${TMPDIR:-/tmp}).
func (c *conn) helperPath(name string) string {
	return path.Join(c.tmp, supervisor.HelperDir, name)
}

// helperCommand is the session command that runs req through the helper,
// making it executable first if it is not yet; dir is the command's
// scratch prefix (its pid file).
func (c *conn) helperCommand(name, dir, cwd string, req providers.ExecRequest) string {
	h := quoteArg(c.helperPath(name))
	var b strings.Builder
	b.WriteString("[ -x " + h + " ] || chmod 755 " + h + " 2>/dev/null; exec " + h + " exec -enc esc -pid " + quoteArg(dir+".pid"))
	if req.Stdin != nil {
		b.WriteString(" -stdin")
	}
	if req.Timeout > 0 {
		b.WriteString(" -timeout " + strconv.FormatFloat(max(req.Timeout, time.Millisecond).Seconds(), 'f', 3, 64))
	}
	b.WriteString(" -cwd " + quoteArg(cwd) + " -- " + quoteArg(req.Command))
	for _, k := range slices.Sorted(maps.Keys(req.Env)) {
		b.WriteString(" " + quoteArg(k+"="+req.Env[k]))
	}
	return b.String()
}
