package trust

import (
	"crypto/ed25519"
	"encoding/hex"
	"fmt"
	"slices"
)

// Retention records each segment it deletes in segments/RETIRED, so that
// verify tells a deletion by policy from an attacker's. A record anyone
// could write would let an attacker delete a segment and write its record:
// retention signs each with the checkpoint key (docs/adr/0018).

func retiredMessage(record string) []byte {
	return []byte("kubetrail retired segment 1\n" + record + "\n")
}

// SignRetired signs a RETIRED record (the line without its signature).
func SignRetired(key ed25519.PrivateKey, record string) string {
	return hex.EncodeToString(ed25519.Sign(key, retiredMessage(record)))
}

// Retired is one RETIRED line (local.RetiredRecord).
type Retired struct {
	// Name is the segment; Record the signed text; Sig the signature in
	// hex, "" when the line has none.
	Name, Record, Sig string
}

// CheckRetired returns one finding per record that none of pubs signed.
func CheckRetired(records []Retired, pubs []ed25519.PublicKey) []string {
	var out []string
	for _, r := range records {
		sig, err := hex.DecodeString(r.Sig)
		switch {
		case r.Sig == "":
			out = append(out, fmt.Sprintf("the record of %s is not signed: forged by whoever deleted the segment, or written by a retention that had no key", r.Name))
		case err != nil || !slices.ContainsFunc(pubs, func(p ed25519.PublicKey) bool { return ed25519.Verify(p, retiredMessage(r.Record), sig) }):
			out = append(out, fmt.Sprintf("the record of %s does not verify with the public key: forged, altered, or signed with another key", r.Name))
		}
	}
	return out
}
