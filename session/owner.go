package session

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"
)

// A session ID is a bearer secret: whoever knows an HTTP session's ID can
// call tools as that session. Sandboxes can read their own labels (hosted
// ones their metadata), so neither the labels nor the store's records name
// a session by its ID: they name it by an owner hash, HMAC-SHA256 of the ID
// under a key only the servers know, cut to 128 bits. Servers sharing a
// store share the key, kept in the store itself (created once, by whichever
// starts first); a store of one process's own gets a key of its own.

// ownerKeyPin is the store setting (Store.Pin) that holds the key, in hex.
const ownerKeyPin = "owner-key"

// ownerHashLen is the length of an owner hash in hex: 128 bits.
const ownerHashLen = 32

func ownerHash(key []byte, sessionID string) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(sessionID))
	return hex.EncodeToString(mac.Sum(nil))[:ownerHashLen]
}

// isOwnerHash tells an owner hash from the session ID that labels made by
// older servers carry (a UUID, or "stdio").
func isOwnerHash(s string) bool {
	if len(s) != ownerHashLen {
		return false
	}
	return strings.Trim(s, "0123456789abcdef") == ""
}

func newOwnerKey() string {
	b := make([]byte, 32)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// loadOwnerKey reads the store's owner key, creating it if it has none.
func loadOwnerKey(s Store) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, err := s.Pin(ctx, ownerKeyPin, newOwnerKey())
	if err != nil {
		return nil, fmt.Errorf("cannot read the owner key from the session store: %w", err)
	}
	key, err := hex.DecodeString(v)
	if err != nil || len(key) < 16 {
		return nil, fmt.Errorf("the session store's owner key (setting %q) is not 16 or more bytes in hex; delete it to make a new one (the live sessions are then forgotten, and their sandboxes reaped)", ownerKeyPin)
	}
	return key, nil
}
