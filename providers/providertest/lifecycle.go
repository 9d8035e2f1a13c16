package providertest

import (
	"errors"
	"maps"
	"path"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
)

func (h *harness) testLifecycle(t *testing.T) {
	t.Run("CreateGetDestroy", func(t *testing.T) {
		t.Parallel()
		ctx := testCtx(t)
		before := time.Now().Add(-time.Minute)
		labels := map[string]string{"providertest-run": randHex(6)}
		sb := h.sandbox(t, providers.CreateOptions{Name: "lifecycle", Labels: labels})
		if sb.ID == "" || sb.Provider != h.p.Name() || sb.Name != "lifecycle" || !path.IsAbs(sb.Workdir) {
			t.Fatalf("Create returned %+v: want an ID, provider %q, name %q and an absolute workdir", sb, h.p.Name(), "lifecycle")
		}
		if sb.CreatedAt.Before(before) || sb.CreatedAt.After(time.Now().Add(time.Minute)) {
			t.Errorf("CreatedAt %v is not about now", sb.CreatedAt)
		}
		got, err := h.p.Get(ctx, sb.ID)
		if err != nil {
			t.Fatalf("Get(%s): %v", sb.ID, err)
		}
		if got.ID != sb.ID || got.Name != sb.Name || got.Workdir != sb.Workdir || !got.CreatedAt.Equal(sb.CreatedAt) {
			t.Errorf("Get = %+v, want what Create returned: %+v", got, sb)
		}
		for k, v := range labels {
			if got.Labels[k] != v {
				t.Errorf("Get labels = %v, want them to include %s=%s", got.Labels, k, v)
			}
		}

		if err := h.p.Destroy(ctx, sb.ID); err != nil {
			t.Fatalf("Destroy(%s): %v", sb.ID, err)
		}
		_, err = h.p.Get(ctx, sb.ID)
		wantKind(t, "Get after Destroy", err, providers.ErrNotFound, sb.ID)
		err = h.p.Destroy(ctx, sb.ID)
		wantKind(t, "Destroy twice", err, providers.ErrNotFound, sb.ID)
		_, err = h.p.Exec(ctx, sb.ID, providers.ExecRequest{Command: "true"})
		wantKind(t, "Exec after Destroy", err, providers.ErrNotFound, sb.ID)
		list, err := h.p.List(ctx, labels)
		if err != nil || len(list) != 0 {
			t.Errorf("List after Destroy = %v, %v; want nothing", list, err)
		}
	})

	t.Run("UnknownIDs", func(t *testing.T) {
		t.Parallel()
		ctx := testCtx(t)
		// The zero UUID is well-formed and unknown; the others are malformed
		// and must not reach the backend as anything but "not found".
		for _, id := range []string{"00000000-0000-0000-0000-000000000000", "no-such-sandbox", "../../etc", ""} {
			_, err := h.p.Get(ctx, id)
			wantKind(t, "Get("+id+")", err, providers.ErrNotFound, "")
			wantKind(t, "Destroy("+id+")", h.p.Destroy(ctx, id), providers.ErrNotFound, "")
			_, err = h.p.Exec(ctx, id, providers.ExecRequest{Command: "true"})
			wantKind(t, "Exec("+id+")", err, providers.ErrNotFound, "")
			_, _, err = h.p.ReadFile(ctx, id, "x")
			wantKind(t, "ReadFile("+id+")", err, providers.ErrNotFound, "")
			wantKind(t, "WriteFile("+id+")", h.p.WriteFile(ctx, id, "x", []byte("x"), 0), providers.ErrNotFound, "")
			_, err = h.p.Stat(ctx, id, "x")
			wantKind(t, "Stat("+id+")", err, providers.ErrNotFound, "")
			_, _, err = h.p.ListFiles(ctx, id, ".", 1, 10)
			wantKind(t, "ListFiles("+id+")", err, providers.ErrNotFound, "")
		}
	})

	t.Run("ListByLabels", func(t *testing.T) {
		t.Parallel()
		ctx := testCtx(t)
		run := randHex(6)
		a := h.sandbox(t, providers.CreateOptions{Name: "a", Labels: map[string]string{"providertest-run": run, "role": "a"}})
		b := h.sandbox(t, providers.CreateOptions{Name: "b", Labels: map[string]string{"providertest-run": run, "role": "b"}})
		tests := []struct {
			match map[string]string
			want  []string
		}{
			{map[string]string{"providertest-run": run}, []string{a.ID, b.ID}},
			{map[string]string{"providertest-run": run, "role": "a"}, []string{a.ID}},
			{map[string]string{"providertest-run": run, "role": "c"}, nil},
			{map[string]string{"providertest-run": randHex(6)}, nil},
		}
		for _, tc := range tests {
			list, err := h.p.List(ctx, tc.match)
			if err != nil {
				t.Fatalf("List(%v): %v", tc.match, err)
			}
			var ids []string
			for _, sb := range list {
				ids = append(ids, sb.ID)
				if !labelsInclude(sb.Labels, tc.match) {
					t.Errorf("List(%v) returned %s with labels %v", tc.match, sb.ID, sb.Labels)
				}
			}
			slices.Sort(ids)
			want := slices.Sorted(slices.Values(tc.want))
			if !slices.Equal(ids, want) {
				t.Errorf("List(%v) = %v, want %v", tc.match, ids, want)
			}
		}
		all, err := h.p.List(ctx, nil)
		if err != nil {
			t.Fatalf("List(nil): %v", err)
		}
		found := 0
		for _, sb := range all {
			if sb.ID == a.ID || sb.ID == b.ID {
				found++
			}
		}
		if found != 2 {
			t.Errorf("List(nil) has %d of the 2 sandboxes just created", found)
		}
	})

	t.Run("FreshDriverServesExistingSandbox", func(t *testing.T) {
		t.Parallel()
		// Handles are IDs, not objects in memory: a second driver (a
		// restarted server, another replica) serves a sandbox it did not
		// create.
		ctx := testCtx(t)
		sb := h.sandbox(t, providers.CreateOptions{Name: "shared", Labels: map[string]string{"k": "v"}})
		if err := h.p.WriteFile(ctx, sb.ID, "note.txt", []byte("from the first driver"), 0); err != nil {
			t.Fatal(err)
		}
		other := providers.NewBackend(h.newProvider(t))
		got, err := other.Get(ctx, sb.ID)
		if err != nil {
			t.Fatalf("a fresh driver cannot Get %s: %v", sb.ID, err)
		}
		if got.Name != "shared" || got.Labels["k"] != "v" || got.Workdir != sb.Workdir {
			t.Errorf("a fresh driver sees %+v, want %+v", got, sb)
		}
		var out LockedBuffer
		if _, err := other.Exec(ctx, sb.ID, providers.ExecRequest{Command: "cat note.txt", Stdout: &out}); err != nil {
			t.Fatal(err)
		}
		if out.String() != "from the first driver" {
			t.Errorf("a fresh driver reads %q", out.String())
		}
		if err := other.Destroy(ctx, sb.ID); err != nil {
			t.Fatalf("a fresh driver cannot Destroy %s: %v", sb.ID, err)
		}
		if _, err := h.p.Get(ctx, sb.ID); !errors.Is(err, providers.ErrNotFound) {
			t.Errorf("the first driver still sees %s after the second destroyed it: %v", sb.ID, err)
		}
	})

	t.Run("EnvironmentAndLabelsAreValidated", func(t *testing.T) {
		t.Parallel()
		ctx := testCtx(t)
		for _, env := range []map[string]string{{"A=B": "x"}, {"": "x"}, {"NUL": "a\x00b"}} {
			sb, err := h.p.Create(ctx, providers.CreateOptions{Env: env})
			if err == nil {
				h.p.Destroy(ctx, sb.ID)
			}
			wantKind(t, "Create with env "+strings.Join(slices.Collect(maps.Keys(env)), ","), err, providers.ErrInvalidArgument, "")
		}
	})
}

func labelsInclude(have, want map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}
