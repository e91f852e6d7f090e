package trust

import (
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// Proof proves that one stored event is covered by a signed checkpoint,
// checked without the store (kubetrail prove --check): the event's bytes
// give its leaf hash, the audit path gives its WAL segment's Merkle root
// (RFC 6962), the chain steps from the head before that segment through
// the later segments give the checkpoint's head, and the checkpoint's
// signature checks with the public key.
type Proof struct {
	// Pos is the event's position, WAL:ORDINAL (ordinal in its WAL
	// segment), and Cluster its cluster: what names it, not proved.
	Pos     string `json:"pos"`
	Cluster string `json:"cluster,omitempty"`
	// Event is the event's stored bytes, exactly: the leaf.
	Event string `json:"event"`
	// WAL is the event's WAL segment; Index and Size are its leaf index
	// and tree size in that segment's tree.
	WAL   uint64 `json:"wal"`
	Index int    `json:"index"`
	Size  int    `json:"size"`
	// Path is the RFC 6962 audit path, leaf to root, in hex.
	Path []string `json:"path"`
	// Prev is the chain head before WAL, in hex.
	Prev string `json:"prev"`
	// Next are the WAL segments after WAL up to the checkpoint's.
	Next []Step `json:"next"`
	// Checkpoint is the signed checkpoint the chain ends at.
	Checkpoint Checkpoint `json:"checkpoint"`
}

// Step is one WAL segment of the chain: its number, event count and root.
type Step struct {
	WAL    uint64 `json:"wal"`
	Events int    `json:"events"`
	Root   string `json:"root"`
}

// HexHashes is hs in hex.
func HexHashes(hs []Hash) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = hex.EncodeToString(h[:])
	}
	return out
}

func parseHash(s, what string) (Hash, error) {
	var h Hash
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(h) {
		return h, fmt.Errorf("%s %q is not a SHA-256 hash in hex", what, s)
	}
	copy(h[:], b)
	return h, nil
}

// Check checks the proof against pub; nil means the event, byte for byte,
// is in the history pub's checkpoint signed. Each error says which link
// fails.
func (p *Proof) Check(pub ed25519.PublicKey) error {
	if !p.Checkpoint.Valid(pub) {
		return fmt.Errorf("the checkpoint's signature does not verify with the public key (key %s)", p.Checkpoint.Key)
	}
	path := make([]Hash, len(p.Path))
	for i, s := range p.Path {
		var err error
		if path[i], err = parseHash(s, "path hash"); err != nil {
			return err
		}
	}
	root, err := RootFromPath(LeafHash([]byte(p.Event)), p.Index, p.Size, path)
	if err != nil {
		return err
	}
	head, err := parseHash(p.Prev, "prev")
	if err != nil {
		return err
	}
	head = ChainStep(head, root, p.WAL, p.Size)
	last := p.WAL
	for _, s := range p.Next {
		if s.WAL <= last {
			return fmt.Errorf("chain step of WAL segment %d after %d: the steps must go forward", s.WAL, last)
		}
		r, err := parseHash(s.Root, "root")
		if err != nil {
			return err
		}
		head, last = ChainStep(head, r, s.WAL, s.Events), s.WAL
	}
	if last != p.Checkpoint.WAL {
		return fmt.Errorf("the chain ends at WAL segment %d, the checkpoint at %d", last, p.Checkpoint.WAL)
	}
	if hex.EncodeToString(head[:]) != p.Checkpoint.Head {
		return fmt.Errorf("the event, its audit path and the chain give head %x, the checkpoint signed %s: the event or the proof was altered", head[:6], short(p.Checkpoint.Head))
	}
	return nil
}

func short(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

// AuditID is the event's auditID, for messages; "" when it has none.
func (p *Proof) AuditID() string {
	var ev struct {
		AuditID string `json:"auditID"`
	}
	json.Unmarshal([]byte(p.Event), &ev)
	return ev.AuditID
}

// ParsePos parses a position WAL:ORDINAL.
func ParsePos(s string) (wal uint64, ord int, err error) {
	a, b, ok := strings.Cut(s, ":")
	w, err1 := strconv.ParseUint(a, 10, 64)
	o, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil || o < 0 {
		return 0, 0, fmt.Errorf("position %q: want WAL:ORDINAL, e.g. 12:345", s)
	}
	return w, o, nil
}
