package tools

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/mcp"
	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/server"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
)

type sandboxCreateArgs struct {
	Provider string  `json:"provider,omitempty" jsonschema_description:"Which provider to create the sandbox on. Omit to use the server's default; sandbox_list shows which are enabled."`
	Name     string  `json:"name,omitempty" jsonschema_description:"A label for the sandbox, shown by sandbox_list."`
	Image    string  `json:"image,omitempty" jsonschema_description:"Provider-specific image or template (e.g. a Docker image). Omit for the provider's default."`
	Env      envVars `json:"env,omitempty" jsonschema_description:"Environment variables set for every command run in this sandbox."`
}

// SandboxInfo describes one sandbox in results.
type SandboxInfo struct {
	SandboxID string     `json:"sandbox_id" jsonschema_description:"Pass this as sandbox_id to address this sandbox."`
	Provider  string     `json:"provider"`
	Name      string     `json:"name,omitempty"`
	Image     string     `json:"image,omitempty"`
	Workdir   string     `json:"workdir" jsonschema_description:"Directory where commands start and relative paths resolve."`
	DiskLimit string     `json:"disk_limit,omitempty" jsonschema_description:"How much the sandbox may write, and where; writes past it fail with no space left."`
	CreatedAt time.Time  `json:"created_at"`
	Current   bool       `json:"current" jsonschema_description:"True for the sandbox used when a call omits sandbox_id."`
	Isolation *Isolation `json:"isolation,omitempty" jsonschema_description:"What confines the sandbox: what its commands can reach and which limits hold."`
}

// Isolation says what confines a sandbox.
type Isolation struct {
	Level   string `json:"level" jsonschema_description:"container, microvm, namespaces (Linux namespaces with Landlock), landlock (Landlock alone) or none (commands run unconfined on the server's machine)."`
	Network string `json:"network" jsonschema_description:"What commands can reach: none, loopback only, host, internet, or a network's name."`
	Limits  string `json:"limits,omitempty" jsonschema_description:"Which limits hold (processes, memory, CPU, disk) and how."`
}

func info(sb providers.Sandbox, current string) SandboxInfo {
	out := SandboxInfo{SandboxID: sb.ID, Provider: sb.Provider, Name: sb.Name, Image: sb.Image, Workdir: sb.Workdir, DiskLimit: sb.DiskLimit, CreatedAt: sb.CreatedAt, Current: sb.ID == current}
	if i := sb.Isolation; i != nil {
		out.Isolation = &Isolation{Level: i.Level, Network: i.Network, Limits: i.Limits}
	}
	return out
}

// isolationText is a sandbox's isolation in a few words, for text results.
func isolationText(i *Isolation) string {
	if i == nil {
		return "isolation not reported"
	}
	s := "isolation " + printable(i.Level) + ", network " + printable(i.Network)
	if i.Limits != "" {
		s += ", limits " + printable(i.Limits)
	}
	return s
}

func (h *handlers) sandboxCreate() server.ServerTool {
	tool := newTool("sandbox_create", "Create sandbox",
		"Create a new, empty sandbox and make it this session's current sandbox. "+
			"You rarely need this: every other tool creates a sandbox on first use when sandbox_id is omitted. "+
			"Create one explicitly to pick a provider or image, to set environment variables for all commands, "+
			"or to work in several isolated sandboxes at once. Sandboxes are destroyed when the session ends.",
		sandboxCreateArgs{}, SandboxInfo{},
		behaviour{}.annotation())
	return server.ServerTool{Tool: tool, Handler: typed(h, func(ctx context.Context, sid string, a sandboxCreateArgs) (*mcp.CallToolResult, error) {
		sb, err := h.m.Create(ctx, sid, a.Provider, providers.CreateOptions{Name: a.Name, Image: a.Image, Env: a.Env})
		if err != nil {
			return nil, err
		}
		out := info(sb, sb.ID)
		text := fmt.Sprintf("Created sandbox %s (provider %s, workdir %s; %s). It is now the current sandbox.", sb.ID, sb.Provider, printable(sb.Workdir), isolationText(out.Isolation))
		if sb.DiskLimit != "" {
			text += " Disk limit: " + printable(sb.DiskLimit) + "."
		}
		return result(out, text), nil
	})}
}

type sandboxListArgs struct{}

type sandboxListResult struct {
	Sandboxes        []SandboxInfo `json:"sandboxes"`
	CurrentSandboxID string        `json:"current_sandbox_id,omitempty"`
	Providers        []string      `json:"providers" jsonschema_description:"Providers enabled on this server."`
	DefaultProvider  string        `json:"default_provider"`
}

func (h *handlers) sandboxList() server.ServerTool {
	tool := newTool("sandbox_list", "List sandboxes",
		"List this session's sandboxes (oldest first), which one is current, and which providers can be used with sandbox_create.",
		sandboxListArgs{}, sandboxListResult{},
		behaviour{ReadOnly: true, Idempotent: true}.annotation())
	return server.ServerTool{Tool: tool, Handler: typed(h, func(ctx context.Context, sid string, _ sandboxListArgs) (*mcp.CallToolResult, error) {
		sbs, current, err := h.m.List(ctx, sid)
		if err != nil {
			return nil, err
		}
		out := sandboxListResult{Sandboxes: []SandboxInfo{}, CurrentSandboxID: current, Providers: h.m.ProviderNames(), DefaultProvider: h.m.DefaultProvider()}
		var b strings.Builder
		if len(sbs) == 0 {
			b.WriteString("No sandboxes yet; one is created on first use.\n")
		}
		for _, sb := range sbs {
			in := info(sb, current)
			out.Sandboxes = append(out.Sandboxes, in)
			mark := " "
			if sb.ID == current {
				mark = "*"
			}
			fmt.Fprintf(&b, "%s %s  %-8s %s %s (%s)\n", mark, sb.ID, sb.Provider, printable(sb.Workdir), printable(sb.Name), isolationText(in.Isolation))
		}
		fmt.Fprintf(&b, "Providers: %s (default %s)", strings.Join(out.Providers, ", "), out.DefaultProvider)
		return result(out, b.String()), nil
	})}
}

type sandboxDestroyArgs struct {
	SandboxID string `json:"sandbox_id" jsonschema_description:"The sandbox to destroy, as returned by sandbox_create or sandbox_list."`
}

type sandboxDestroyResult struct {
	SandboxID string `json:"sandbox_id"`
	Destroyed bool   `json:"destroyed"`
}

func (h *handlers) sandboxDestroy() server.ServerTool {
	tool := newTool("sandbox_destroy", "Destroy sandbox",
		"Destroy one of this session's sandboxes: its processes are killed and its files deleted. This cannot be undone.",
		sandboxDestroyArgs{}, sandboxDestroyResult{},
		behaviour{Destructive: true, Idempotent: true}.annotation())
	return server.ServerTool{Tool: tool, Handler: typed(h, func(ctx context.Context, sid string, a sandboxDestroyArgs) (*mcp.CallToolResult, error) {
		if a.SandboxID == "" {
			return nil, invalid("sandbox_id is required; call sandbox_list to see this session's sandboxes")
		}
		if err := h.m.Destroy(ctx, sid, a.SandboxID); err != nil {
			return nil, err
		}
		return result(sandboxDestroyResult{SandboxID: a.SandboxID, Destroyed: true}, "Destroyed sandbox "+a.SandboxID+"."), nil
	})}
}
