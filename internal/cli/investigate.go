package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kubetrail/kubetrail/internal/escape"
	"github.com/kubetrail/kubetrail/internal/investigate"
	"github.com/kubetrail/kubetrail/internal/query"
	"github.com/kubetrail/kubetrail/internal/store/local"
)

// The investigation commands (timeline, who, activity, history, secrets, execs,
// denied, rbac, from) each run one investigation of internal/investigate
// by name with its parameters: investigate.Run over the --data folder, or
// the same parameters sent to a --server's /api/v1/investigate/NAME.

// invFlags are the flags every investigation takes.
type invFlags struct {
	dir, output, where string
	limit              int
	tf                 timeFlags
	includeSystem      bool
	remote             remoteFlags
	store              storeFlag
	// nsf is -n/-A, for the investigations that do not take a namespace
	// of their own (who and history name the object's).
	nsf nsFlags
}

// register adds the flags; --limit keeps the most recent rows of a
// timeline, the first groups of a grouped report.
func (f *invFlags) register(cmd *cobra.Command, timeline bool) {
	addDataFlag(cmd, &f.dir)
	f.remote.add(cmd)
	f.store.add(cmd)
	fl := cmd.Flags()
	f.tf.add(cmd)
	fl.StringVar(&f.where, "where", "", `more conditions in the filter language, e.g. 'user!~"^system:"' (docs/query.md)`)
	if cmd.Name() != "who" && cmd.Name() != "history" { // theirs is the object's namespace
		f.nsf.add(cmd)
	} else {
		fl.BoolVarP(&f.nsf.all, "all-namespaces", "A", false, "objects in every namespace: the default without -n, accepted for kubectl habits")
	}
	if cmd.Name() != "who" {
		fl.BoolVar(&f.includeSystem, "include-system", false, "also show the control plane's own requests (system:apiserver, system:kube-controller-manager, system:kube-scheduler, system:node:*, system:serviceaccount:kube-system:*), hidden by default unless denied or impersonating someone")
	}
	out := "table, wide, json or jsonl"
	if timeline {
		if slices.Contains(investigate.Params(cmd.Name()), "stages") {
			out += "; wide also prints one row per event (stage) instead of per request"
		}
		fl.IntVar(&f.limit, "limit", 0, "print only the most recent N rows; 0 means all")
	} else {
		fl.IntVar(&f.limit, "limit", 0, "print only the first N rows, the most important (they come first); 0 means all")
	}
	fl.StringVarP(&f.output, "output", "o", "table", out)
}

func (f *invFlags) wide() bool { return f.output == "wide" }

// run checks the flags and runs investigation name with its own
// parameters p (see investigate.Run) and the scope the flags give, over
// the --data folder or through a --server's API (the same parameters), and
// prints its report.
func (f *invFlags) run(ctx context.Context, e *env, name string, p url.Values) (err error) {
	defer func() { err = f.remote.damaged(err) }()
	if !slices.Contains(investigate.Formats, f.output) {
		return fmt.Errorf("-o %q: want %s", f.output, strings.Join(investigate.Formats, ", "))
	}
	now := time.Now()
	if err := f.nsf.check(); err != nil {
		return err
	}
	if c := f.nsf.cond(); c != "" {
		if strings.TrimSpace(f.where) == "" {
			f.where = c
		} else {
			f.where = c + " and (" + f.where + ")"
		}
	}
	if strings.TrimSpace(f.where) != "" {
		flt, err := query.CompileAt(f.where, now)
		if err != nil {
			if qe, ok := investigate.IsQueryError(err); ok {
				fmt.Fprintln(e.stderr, "--where: "+qe.Format(f.where))
				return exitCode(2)
			}
			return err
		}
		// As query says them: verb=lst answers empty, and should say why.
		for _, w := range flt.Warnings() {
			fmt.Fprintf(e.stderr, "kubetrail: warning: --where: %s\n", escape.Text(w))
		}
		p.Set("where", f.where)
	}
	// Times go as the absolute times they mean here, so that a server
	// reads "2h ago" as this command does.
	lo, hi, err := f.tf.bounds(now)
	if err != nil {
		return err
	}
	setTimeParams(p, lo, hi)
	if f.limit != 0 {
		p.Set("limit", strconv.Itoa(f.limit))
	}
	if f.includeSystem {
		p.Set("include-system", "1")
	}
	if f.wide() && slices.Contains(investigate.Params(name), "stages") {
		p.Set("stages", "all")
	}
	var rep investigate.Report
	if f.remote.url != "" {
		switch f.output {
		case "table":
			p.Set("table", "1")
		case "wide":
			p.Set("table", "wide")
		}
		resp, err := f.remote.do(ctx, "/api/v1/investigate/"+name, p)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var ans investigate.Answer
		if err := json.NewDecoder(resp.Body).Decode(&ans); err != nil {
			return fmt.Errorf("server sent an answer that is not an investigation's JSON: %w", err)
		}
		rep = ans.Report()
	} else if f.store.url != "" {
		r, err := f.store.open(ctx, &f.remote)
		if err != nil {
			return err
		}
		defer r.Close()
		if rep, err = investigate.Run(ctx, storeSource{ctx, r}, name, p, now); err != nil {
			return err
		}
	} else {
		r, oerr := local.OpenReader(f.dir)
		if oerr != nil {
			return oerr
		}
		defer r.Close()
		defer func() { err = withDamage(r, err) }()
		if rep, err = investigate.Run(ctx, r, name, p, now); err != nil {
			return err
		}
	}
	return investigate.Write(e.stdout, rep, f.output)
}

const invCommon = `

Times: RECEIVED is when the API server received the request
(requestReceivedTimestamp); TIME, in who -o wide as in query, is the
event's stageTimestamp, which --since and --until compare with; FIRST and
LAST are the first and last RECEIVED of a group.
Every investigation takes --since/--until, --where FILTER (more conditions
in the filter language, docs/query.md; warnings such as a verb the API
server never writes are printed on stderr) and -o table|wide|json|jsonl. It
reads the --data folder, a ClickHouse store with --store URL (the filter
runs in ClickHouse as SQL; docs/clickhouse.md), or asks a running
kubetrail serve with --server URL (--token-file, --ca); each prints the
same.
Source IPs print with the last one marked (peer): only that address was
seen by the API server; the others come from headers any client can set.
Every investigation but who hides the control plane's own requests
(system:apiserver, system:kube-controller-manager, system:kube-scheduler,
system:node:*, system:serviceaccount:kube-system:*) unless they were denied
or impersonated someone, and says how many it hid; --include-system shows
them.`

func whoCmd(e *env) *cobra.Command {
	var f invFlags
	var ns string
	cmd := &cobra.Command{
		Use:   "who VERB RESOURCE[/NAME] [NAME]",
		Short: "Who did VERB to an object: user, groups, impersonation, source, result",
		Long: `who answers "who deleted secret important in production?": every request that
did VERB to the object (or, without NAME, to any object of the resource), with
the user, groups, impersonated user, source IPs, user agent, time, stage and
result (status code and the authorizer's decision). One row per request (its
last stage); -o wide prints every stage.

VERB is a Kubernetes verb (get, list, watch, create, update, patch, delete,
deletecollection, or any other), a comma-separated list, "*" for any, or a
word people use: deleted, created, updated, patched, read (get,list,watch),
changed or write (create,update,patch,delete,deletecollection).

RESOURCE takes kubectl's short and singular names (secret, cm, deploy, po,
sa, crb, rb, ...; see docs/investigations.md), an API group after a dot
(deploy.apps), and a subresource after the name (pods/web/exec). NAME and -n
take '*' globs. Without -n every namespace is searched. With a NAME, a VERB
that takes in deletecollection (deleted, write, *) also lists the
deletecollections of the resource in the namespace: they name no object,
yet may have deleted it.` + invCommon,
		Example: `  kubetrail who delete secrets/important -n production
  kubetrail who deleted secret important -n production
  kubetrail who changed cm -n kube-system --since 24h
  kubetrail who create pods/web/exec -n production -o wide`,
		Args: cobra.RangeArgs(2, 3),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := investigate.ParseTarget(args[1])
			if err != nil {
				return err
			}
			p := url.Values{"verb": {args[0]}, "resource": {args[1]}}
			if len(args) == 3 {
				if t.Name != "" {
					return fmt.Errorf("the name is given twice: %q and %q", args[1], args[2])
				}
				p.Set("name", args[2])
			}
			if ns != "" {
				if f.nsf.all {
					return fmt.Errorf("-n %s and -A: choose one namespace or all", ns)
				}
				p.Set("namespace", ns)
			}
			return f.run(cmd.Context(), e, "who", p)
		},
	}
	f.register(cmd, true)
	cmd.Flags().StringVarP(&ns, "namespace", "n", "", "the object's namespace; empty for any")
	return cmd
}

func activityCmd(e *env) *cobra.Command {
	var f invFlags
	cmd := &cobra.Command{
		Use:   "activity USER",
		Short: "A user's timeline: what they did, and what was done as them",
		Long: `activity prints, in time order, every request made by USER or made by someone
impersonating USER (user=USER or as=USER), with verb, object and result.
USER takes '*' globs (system:serviceaccount:ci:*).` + invCommon,
		Example: `  kubetrail activity alice --since 24h
  kubetrail activity alice --where 'verb!=get'
  kubetrail activity 'system:serviceaccount:default:*' -o jsonl`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.run(cmd.Context(), e, "activity", url.Values{"user": {args[0]}})
		},
	}
	f.register(cmd, true)
	return cmd
}

func historyCmd(e *env) *cobra.Command {
	var f invFlags
	var ns string
	var reads, diffs bool
	cmd := &cobra.Command{
		Use:   "history RESOURCE/NAME [-n NAMESPACE]",
		Short: "An object's life: create, updates and patches, delete, with body diffs",
		Long: `history prints the writes to one object in time order — create, update, patch
(of the object and of its subresources such as status) and delete — each
followed by what it changed: a diff of the object before and after, taken
from the events' responseObject (or requestObject) where the audit policy
recorded bodies (level Request or RequestResponse). metadata.managedFields
and metadata.resourceVersion are left out of the diffs. A creation shows the
whole object. Failed writes are listed without a diff. The deletecollections
of the resource in the object's namespace are listed too: they name no
object, yet may have deleted it. The creation of an object named by the API
server (generateName) is found by the name in its responseObject (level
RequestResponse): its event's objectRef has no name.

RESOURCE takes the same names as for who (secret, cm, deploy, ...).` + invCommon,
		Example: `  kubetrail history deploy/web -n production
  kubetrail history clusterrolebinding/admin-binding
  kubetrail history pod web -n production --reads -o json`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := investigate.ParseTarget(args[0])
			if err != nil {
				return err
			}
			p := url.Values{"resource": {args[0]}, "reads": {strconv.FormatBool(reads)}, "diff": {strconv.FormatBool(diffs)}}
			if len(args) == 2 {
				if t.Name != "" {
					return fmt.Errorf("the name is given twice: %q and %q", args[0], args[1])
				}
				t.Name = args[1]
				p.Set("name", args[1])
			}
			if t.Name == "" {
				return fmt.Errorf("%q: history needs an object name, as RESOURCE/NAME (a '*' glob follows several)", args[0])
			}
			if ns != "" {
				if f.nsf.all {
					return fmt.Errorf("-n %s and -A: choose one namespace or all", ns)
				}
				p.Set("namespace", ns)
			}
			return f.run(cmd.Context(), e, "history", p)
		},
	}
	f.register(cmd, true)
	cmd.Flags().StringVarP(&ns, "namespace", "n", "", "the object's namespace; empty for any")
	cmd.Flags().BoolVar(&reads, "reads", false, "also list get, list and watch requests")
	cmd.Flags().BoolVar(&diffs, "diff", true, "show what each change did to the object (--diff=false: the requests only)")
	return cmd
}

func secretsCmd(e *env) *cobra.Command {
	var f invFlags
	cmd := &cobra.Command{
		Use:   "secrets",
		Short: "Who read, listed, watched and changed which secrets",
		Long: `secrets groups the requests on secrets by user and verb, with the number of
requests, their status codes, the secrets touched (namespace/name; a list or
watch of a namespace is namespace/*, of the cluster *) and the last time.
Reads (get, list, watch) by users outside system: — people rather than
Kubernetes components and service accounts — are flagged. People come
first.` + invCommon,
		Example: `  kubetrail secrets --since 7d
  kubetrail secrets --where 'ns=production'
  kubetrail secrets -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.run(cmd.Context(), e, "secrets", url.Values{})
		},
	}
	f.register(cmd, false)
	return cmd
}

func execsCmd(e *env) *cobra.Command {
	var f invFlags
	cmd := &cobra.Command{
		Use:   "execs",
		Short: "Who exec'd into, attached to or port-forwarded to pods, and which command",
		Long: `execs lists exec, attach and portforward requests on pods, with the pod,
container and the command (decoded from the command= parameters of the
request URI). kubectl 1.30 and later opens these sessions over WebSocket,
which is logged as verb get; older clients, and kubectl's fallback, use SPDY,
logged as create. Both are listed; the VIA column tells which.` + invCommon,
		Example: `  kubetrail execs --since 1h
  kubetrail execs --where 'ns=production user!~"^system:"'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.run(cmd.Context(), e, "execs", url.Values{})
		},
	}
	f.register(cmd, true)
	return cmd
}

func deniedCmd(e *env) *cobra.Command {
	var f invFlags
	cmd := &cobra.Command{
		Use:   "denied",
		Short: "Refused requests (401, 403, decision=forbid) grouped by user, most first",
		Long: `denied groups the requests the API server refused — 401 (authentication
failed: no user), 403 (forbidden) and any the authorizer decided to forbid —
by user, with the count, first and last time, and the top codes, verbs,
resources, namespaces and peer addresses (all of them with -o wide).` + invCommon,
		Example: `  kubetrail denied --since 24h
  kubetrail denied --where 'resource=secrets'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.run(cmd.Context(), e, "denied", url.Values{})
		},
	}
	f.register(cmd, false)
	return cmd
}

func rbacCmd(e *env) *cobra.Command {
	var f invFlags
	cmd := &cobra.Command{
		Use:   "rbac",
		Short: "Changes to roles, role bindings, cluster roles and cluster role bindings",
		Long: `rbac lists the creates, updates, patches and deletes of RBAC objects, with
each binding's role reference and subjects read from the event's body (when
the audit policy recorded it), and flags what deserves a look: bindings to
the cluster-admin ClusterRole, rules with "*" verbs or resources, and rules
granting escalate, bind or impersonate.` + invCommon,
		Example: `  kubetrail rbac --since 7d
  kubetrail rbac --where 'user!~"^system:"'
  kubetrail rbac -o json | jq 'select(.flags)'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.run(cmd.Context(), e, "rbac", url.Values{})
		},
	}
	f.register(cmd, true)
	return cmd
}

func fromCmd(e *env) *cobra.Command {
	var f invFlags
	cmd := &cobra.Command{
		Use:   "from IP|CIDR",
		Short: "What came from an address or network",
		Long: `from lists the requests with the address, or an address in the network, among
their source IPs. The MATCH column says how: "peer" when the API server saw
the address itself (the last sourceIPs entry), "forwarded only" when it
appears only in entries taken from X-Forwarded-For or X-Real-Ip headers,
which any client can set — those requests cannot be attributed to the
address.` + invCommon,
		Example: `  kubetrail from 192.168.1.100
  kubetrail from 10.0.0.0/8 --since 24h --where 'verb!=get'`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.run(cmd.Context(), e, "from", url.Values{"addr": {args[0]}})
		},
	}
	f.register(cmd, true)
	return cmd
}

func timelineCmd(e *env) *cobra.Command {
	var f invFlags
	var user string
	var gap time.Duration
	var reads bool
	cmd := &cobra.Command{
		Use:   "timeline [--user USER]",
		Short: "The story of an incident across users, a sentence a row, similar requests folded",
		Long: `timeline tells what happened, in time order, across users: one sentence a row
("attacker was denied list secrets in production 6 times in 218 ms", "admin
created clusterrolebinding backdoor granting cluster-admin to attacker",
"admin as developer was denied list secrets in production"), with the audit
IDs to drill down with query auditid=ID.

Similar requests that follow each other fold into one row with a count: same
user, same impersonated user, verb, resource and subresource, namespace and
result (and the same exec command, or the same RBAC grant), each within
--gap of the one before (default 10s; --gap 0 folds nothing). Requests of
other kinds in between do not break a fold; the row's time is its first
request's.

Reads that every client makes all day are left out unless --reads: an
allowed get, list or watch (or GET /version, /api...) by a user as
themselves, of anything but secrets, RBAC objects and pods' exec, attach
and portforward. Denied and unauthenticated requests, system:anonymous,
impersonation, secrets, RBAC, exec/attach/portforward and every write always
show. --user keeps one user's story: their requests, requests made as them,
and the role bindings naming them.` + invCommon,
		Example: `  kubetrail timeline --since 2h
  kubetrail timeline --user attacker -n production
  kubetrail timeline --since 2026-12-05T00:30:00Z --until 2026-12-05T01:00:00Z -o jsonl
  kubetrail timeline --gap 0 --reads -o wide`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if gap < 0 {
				return fmt.Errorf("--gap %s: want 0 or more", gap)
			}
			p := url.Values{"gap": {gap.String()}}
			if user != "" {
				p.Set("user", user)
			}
			if reads {
				p.Set("reads", "1")
			}
			return f.run(cmd.Context(), e, "timeline", p)
		},
	}
	f.register(cmd, true)
	fl := cmd.Flags()
	fl.StringVar(&user, "user", "", "only this user's story: by them, as them, and bindings naming them ('*' globs)")
	fl.DurationVar(&gap, "gap", investigate.DefaultGap, "fold similar requests at most this far apart into one row; 0 folds none")
	fl.BoolVar(&reads, "reads", false, "also show the allowed reads left out by default")
	return cmd
}
