package e2bfake

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	fspb "github.com/mcp-sandbox/mcp-sandbox/providers/e2b/internal/envdpb/filesystem"
	"github.com/mcp-sandbox/mcp-sandbox/providers/e2b/internal/envdpb/filesystem/filesystemconnect"
)

// filesystemService is envd's filesystem service over one sandbox directory.
// Watching is not implemented.
type filesystemService struct {
	filesystemconnect.UnimplementedFilesystemHandler
}

// entryInfo describes a path the way envd does: a symlink is reported with
// the type and permissions of what it points to (unspecified when dangling)
// and its resolved target in symlink_target.
func entryInfo(abs string, fi fs.FileInfo, hostPath string) *fspb.EntryInfo {
	mode := fi.Mode()
	e := &fspb.EntryInfo{
		Name: path.Base(abs), Path: abs, Size: fi.Size(),
		Permissions: mode.String(), Owner: "user", Group: "user",
		ModifiedTime: timestamppb.New(fi.ModTime()),
	}
	if mode&fs.ModeSymlink != 0 {
		target, err := filepath.EvalSymlinks(hostPath)
		if err != nil {
			target = abs
		}
		e.SymlinkTarget = &target
		mode = 0
		if ti, err := os.Stat(hostPath); err == nil {
			mode = ti.Mode()
		} else {
			e.Type = fspb.FileType_FILE_TYPE_UNSPECIFIED
			return e
		}
	}
	e.Mode = uint32(mode.Perm())
	switch {
	case mode.IsRegular():
		e.Type = fspb.FileType_FILE_TYPE_FILE
	case mode.IsDir():
		e.Type = fspb.FileType_FILE_TYPE_DIRECTORY
	}
	return e
}

func (f *filesystemService) Stat(ctx context.Context, req *connect.Request[fspb.StatRequest]) (*connect.Response[fspb.StatResponse], error) {
	sb := sandboxFrom(ctx)
	rel, abs, err := sb.Resolve(req.Msg.GetPath())
	if err != nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, err)
	}
	root, err := sb.Root()
	if err != nil {
		return nil, connect.NewError(connect.CodeInternal, err)
	}
	defer root.Close()
	fi, err := root.Lstat(rel)
	if err != nil {
		return nil, connectError("stat", abs, err)
	}
	return connect.NewResponse(&fspb.StatResponse{Entry: entryInfo(abs, fi, abs)}), nil
}

func (f *filesystemService) MakeDir(ctx context.Context, req *connect.Request[fspb.MakeDirRequest]) (*connect.Response[fspb.MakeDirResponse], error) {
	sb := sandboxFrom(ctx)
	rel, abs, err := sb.Resolve(req.Msg.GetPath())
	if err != nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, err)
	}
	root, err := sb.Root()
	if err != nil {
		return nil, connect.NewError(connect.CodeInternal, err)
	}
	defer root.Close()
	if fi, err := root.Stat(rel); err == nil {
		if fi.IsDir() {
			return nil, connect.NewError(connect.CodeAlreadyExists, fmt.Errorf("directory '%s' already exists", abs))
		}
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("path '%s' already exists and is not a directory", abs))
	}
	if err := root.MkdirAll(rel, 0o755); err != nil {
		return nil, connectError("make dir", abs, err)
	}
	fi, err := root.Lstat(rel)
	if err != nil {
		return nil, connectError("make dir", abs, err)
	}
	return connect.NewResponse(&fspb.MakeDirResponse{Entry: entryInfo(abs, fi, abs)}), nil
}

func (f *filesystemService) Move(ctx context.Context, req *connect.Request[fspb.MoveRequest]) (*connect.Response[fspb.MoveResponse], error) {
	sb := sandboxFrom(ctx)
	src, srcAbs, err := sb.Resolve(req.Msg.GetSource())
	if err != nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, err)
	}
	dst, dstAbs, err := sb.Resolve(req.Msg.GetDestination())
	if err != nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, err)
	}
	root, err := sb.Root()
	if err != nil {
		return nil, connect.NewError(connect.CodeInternal, err)
	}
	defer root.Close()
	if err := root.Rename(src, dst); err != nil {
		return nil, connectError("move", srcAbs, err)
	}
	fi, err := root.Lstat(dst)
	if err != nil {
		return nil, connectError("move", dstAbs, err)
	}
	return connect.NewResponse(&fspb.MoveResponse{Entry: entryInfo(dstAbs, fi, dstAbs)}), nil
}

// ListDir walks depth levels (0 is taken as 1) in lexical order, without
// following symlinks.
func (f *filesystemService) ListDir(ctx context.Context, req *connect.Request[fspb.ListDirRequest]) (*connect.Response[fspb.ListDirResponse], error) {
	sb := sandboxFrom(ctx)
	rel, abs, err := sb.Resolve(req.Msg.GetPath())
	if err != nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, err)
	}
	depth := int(max(req.Msg.GetDepth(), 1))
	root, err := sb.Root()
	if err != nil {
		return nil, connect.NewError(connect.CodeInternal, err)
	}
	defer root.Close()
	fi, err := root.Stat(rel)
	if err != nil {
		return nil, connectError("list", abs, err)
	}
	if !fi.IsDir() {
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("path '%s' is not a directory", abs))
	}
	var out []*fspb.EntryInfo
	err = fs.WalkDir(root.FS(), rel, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == rel {
				return err
			}
			return nil
		}
		if p == rel {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		sub := strings.TrimPrefix(p, rel+"/")
		if rel == "." {
			sub = p
		}
		out = append(out, entryInfo(path.Join(abs, sub), fi, path.Join(abs, sub)))
		if d.IsDir() && strings.Count(sub, "/")+1 >= depth {
			return fs.SkipDir
		}
		return nil
	})
	if err != nil {
		return nil, connectError("list", abs, err)
	}
	// envd's order: directories first, then by case-folded name.
	slices.SortStableFunc(out, func(a, b *fspb.EntryInfo) int {
		if (a.Type == fspb.FileType_FILE_TYPE_DIRECTORY) != (b.Type == fspb.FileType_FILE_TYPE_DIRECTORY) {
			if a.Type == fspb.FileType_FILE_TYPE_DIRECTORY {
				return -1
			}
			return 1
		}
		return strings.Compare(strings.ToLower(a.Name), strings.ToLower(b.Name))
	})
	return connect.NewResponse(&fspb.ListDirResponse{Entries: out}), nil
}

func (f *filesystemService) Remove(ctx context.Context, req *connect.Request[fspb.RemoveRequest]) (*connect.Response[fspb.RemoveResponse], error) {
	sb := sandboxFrom(ctx)
	rel, abs, err := sb.Resolve(req.Msg.GetPath())
	if err != nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, err)
	}
	if rel == "." {
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("refusing to remove the home directory '%s'", abs))
	}
	root, err := sb.Root()
	if err != nil {
		return nil, connect.NewError(connect.CodeInternal, err)
	}
	defer root.Close()
	if _, err := root.Lstat(rel); err != nil {
		return nil, connectError("remove", abs, err)
	}
	if err := root.RemoveAll(rel); err != nil {
		return nil, connectError("remove", abs, err)
	}
	return connect.NewResponse(&fspb.RemoveResponse{}), nil
}
