#!/usr/bin/env python3
"""Offline checks of the Kubernetes manifests in deploy/k8s (driven by tests/lint/k8s.sh).

  k8s_check.py check ROOT FILE...  one line per FILE: "FILE<TAB>ok<TAB>what" or
                                   "FILE<TAB>fail<TAB>problems"; then lines for checks
                                   that span files, "-<TAB>ok|fail|skip<TAB>what"
  k8s_check.py serve PORTFILE      a stand-in API server on 127.0.0.1 that answers
                                   discovery only (see serve()), for kubectl's
                                   client-side dry run; writes its port to PORTFILE

What `check` validates, per object:
- YAML: parses, no duplicate keys, every document a mapping with apiVersion, kind,
  metadata.name, and metadata.namespace for namespaced kinds; the file opens with a
  comment.
- Fields, for built-in kinds: every field name is one the Kubernetes API has, with the
  right type (string, integer, boolean, list, map, object), and every required field
  is there. The schema is the model classes of the Kubernetes Python client (Debian's
  python3-kubernetes, the API of Kubernetes 1.22), generated from the API's OpenAPI
  document. It does not check enum values (imagePullPolicy, protocol, ...) beyond a few
  listed below, value formats (quantities, names) or the API server's own validation.
- NetworkAttachmentDefinition (a CRD: no schema here): spec.config is JSON naming a CNI
  type, its name and an IPAM type.
- References: volume mounts name volumes; ConfigMaps, Secrets and keys that volumes
  name exist among the manifests; selectors match the pod template's labels; Services
  select some pods, and named ports exist; $(VAR) in args is a declared env var; the
  Multus annotation names a NetworkAttachmentDefinition; the RDMA resource the pods ask
  for is the one the device plugin's ConfigMap offers.
- rdmesh: every container of the rdmesh image runs `orch` or `node` with only the
  options of the interface below, each with a value; the files they name are inside a
  mount that provides them (the ConfigMap or Secret key), --certs and --dir of a node
  are writable emptyDirs, --stage names a chain stage whose `pods:` names this
  Deployment, --orch and --store name Services of these manifests; image
  REGISTRY/rdmesh:TAG, imagePullPolicy IfNotPresent everywhere.
- The ConfigMap's chain.yaml has configs/chain.yaml's stages, each pod-backed; the
  files it names are keys of the ConfigMap; the copies of configs/ files are identical.
"""
import base64
import inspect
import json
import os
import re
import sys

import yaml

# The rdmesh interface the manifests are written against: subcommand -> options (each
# takes one value) and the options a manifest must give.
RDMESH_OPTS = {
    "orch": {"--rack", "--chain", "--certs", "--store", "--listen", "--advertise",
             "--pod-cert-s"},
    "node": {"--orch", "--join", "--stage", "--name", "--data", "--ca", "--certs", "--dir",
             "--rdma-device"},
}
RDMESH_REQUIRED = {
    "orch": ["--rack", "--chain", "--certs", "--store", "--listen", "--advertise"],
    "node": ["--orch", "--join", "--stage", "--name"],
}
RDMESH_IMAGE = "REGISTRY/rdmesh:TAG"
ORCH_CERT_FILES = ["ca.pem", "ca.key", "orch.pem", "orch.key"]
# configs/ files the ConfigMap carries verbatim
COPIED_CONFIGS = ["directory.yaml", "policy.yaml", "blocked-hosts.txt"]
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume",
                  "StorageClass", "CustomResourceDefinition", "PriorityClass"}
ENUMS = {  # (model, attribute): allowed values (the python client of 1.22 has none)
    ("V1Container", "image_pull_policy"): {"Always", "IfNotPresent", "Never"},
    ("V1ContainerPort", "protocol"): {"TCP", "UDP", "SCTP"},
    ("V1ServicePort", "protocol"): {"TCP", "UDP", "SCTP"},
    ("V1ServiceSpec", "type"): {"ClusterIP", "NodePort", "LoadBalancer", "ExternalName"},
    ("V1DeploymentStrategy", "type"): {"RollingUpdate", "Recreate"},
    ("V1TopologySpreadConstraint", "when_unsatisfiable"): {"DoNotSchedule",
                                                            "ScheduleAnyway"},
    ("V1SeccompProfile", "type"): {"RuntimeDefault", "Unconfined", "Localhost"},
    ("V1StatefulSetSpec", "pod_management_policy"): {"OrderedReady", "Parallel"},
    ("V1EmptyDirVolumeSource", "medium"): {"", "Memory"},
}
QUANTITY = {("V1ResourceRequirements", "limits"), ("V1ResourceRequirements", "requests"),
            ("V1EmptyDirVolumeSource", "size_limit")}


class DupLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping."""


def _mapping(loader, node, deep=False):
    seen = set()
    for k, _ in node.value:
        key = loader.construct_object(k, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, "duplicate key %r" % (key,), k.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep)


DupLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def load_all(text):
    return [d for d in yaml.load_all(text, Loader=DupLoader) if d is not None]


# ---- fields, against the Kubernetes Python client's models ------------------------

_models = None
_required = {}


def models():
    global _models
    if _models is None:
        import kubernetes.client.models as m  # python3-kubernetes
        _models = m
    return _models


def required(cls):
    if cls.__name__ not in _required:
        req = set()
        for attr in cls.openapi_types:
            prop = getattr(cls, attr, None)
            try:
                src = inspect.getsource(prop.fset)
            except (AttributeError, TypeError, OSError):
                continue
            if "must not be `None`" in src:
                req.add(attr)
        _required[cls.__name__] = req
    return _required[cls.__name__]


def walk(val, typ, path, errs, owner=None):
    """Checks val against the python client's type string typ; owner: (model, attr)."""
    if owner in QUANTITY and typ == "str":
        if not isinstance(val, (str, int, float)) or isinstance(val, bool):
            errs.append("%s: a quantity, not %r" % (path, val))
        return
    if typ.startswith("list["):
        if not isinstance(val, list):
            errs.append("%s: should be a list, is %s" % (path, type(val).__name__))
            return
        for i, v in enumerate(val):
            walk(v, typ[5:-1], "%s[%d]" % (path, i), errs, owner)
        return
    if typ.startswith("dict("):
        if not isinstance(val, dict):
            errs.append("%s: should be a map, is %s" % (path, type(val).__name__))
            return
        inner = typ[typ.index(",") + 1:-1].strip()
        for k, v in val.items():
            if not isinstance(k, str):
                errs.append("%s: key %r is not a string" % (path, k))
            walk(v, inner, "%s.%s" % (path, k), errs, owner)
        return
    if typ == "str":
        if not isinstance(val, str):
            errs.append("%s: should be a string, is %s %r" % (path, type(val).__name__, val))
        elif owner in ENUMS and val not in ENUMS[owner]:
            errs.append("%s: %r is not one of %s" % (path, val, sorted(ENUMS[owner])))
        return
    if typ == "int":
        if not isinstance(val, int) or isinstance(val, bool):
            errs.append("%s: should be an integer, is %r" % (path, val))
        return
    if typ == "float":
        if not isinstance(val, (int, float)) or isinstance(val, bool):
            errs.append("%s: should be a number, is %r" % (path, val))
        return
    if typ == "bool":
        if not isinstance(val, bool):
            errs.append("%s: should be true or false, is %r" % (path, val))
        return
    if typ == "datetime":
        if not isinstance(val, str):
            errs.append("%s: should be a timestamp string" % path)
        return
    if typ == "object":  # IntOrString, RawExtension, ...
        if isinstance(val, (dict, list)) and owner and owner[1] in ("port", "target_port",
                                                                   "max_unavailable",
                                                                   "max_surge",
                                                                   "min_available"):
            errs.append("%s: should be a number or a name" % path)
        return
    cls = getattr(models(), typ, None)
    if cls is None:
        errs.append("%s: no model %s in the python client" % (path, typ))
        return
    if not isinstance(val, dict):
        errs.append("%s: should be a mapping (%s), is %s" % (path, typ, type(val).__name__))
        return
    rev = {v: k for k, v in cls.attribute_map.items()}
    for k, v in val.items():
        if k not in rev:
            near = [f for f in cls.attribute_map.values() if f.lower() == str(k).lower()]
            errs.append("%s: unknown field %r%s" % (
                path, k, " (did you mean %r?)" % near[0] if near else ""))
            continue
        attr = rev[k]
        walk(v, cls.openapi_types[attr], "%s.%s" % (path, k), errs, (typ, attr))
    for attr in required(cls):
        if cls.attribute_map[attr] not in val:
            errs.append("%s: missing required field %r" % (path, cls.attribute_map[attr]))


def model_name(doc):
    version = str(doc.get("apiVersion", "")).split("/")[-1]
    return version[:1].upper() + version[1:] + str(doc.get("kind", ""))


def check_nad(doc, path, errs):
    extra = set(doc) - {"apiVersion", "kind", "metadata", "spec"}
    if extra:
        errs.append("%s: unknown fields %s" % (path, sorted(extra)))
    spec = doc.get("spec") or {}
    if set(spec) - {"config"}:
        errs.append("%s.spec: unknown fields %s" % (path, sorted(set(spec) - {"config"})))
    try:
        conf = json.loads(spec.get("config", ""))
    except (TypeError, ValueError) as e:
        errs.append("%s.spec.config: not JSON: %s" % (path, e))
        return
    for k in ("cniVersion", "type", "name"):
        if not conf.get(k):
            errs.append("%s.spec.config: no %r" % (path, k))
    if conf.get("name") != doc["metadata"].get("name"):
        errs.append("%s.spec.config: name %r is not the object's name" % (path, conf.get("name")))
    if conf.get("type") in ("macvlan", "ipvlan") and not conf.get("master"):
        errs.append("%s.spec.config: %s without a master" % (path, conf.get("type")))
    if not (conf.get("ipam") or {}).get("type"):
        errs.append("%s.spec.config: no ipam type" % path)


# ---- references across the manifests ----------------------------------------------


def pod_templates(doc):
    """(pod template, selector labels) of a workload, or (None, None)."""
    if doc.get("kind") in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        spec = doc.get("spec") or {}
        return spec.get("template") or {}, ((spec.get("selector") or {}).get("matchLabels"))
    return None, None


def containers(tmpl):
    spec = tmpl.get("spec") or {}
    return (spec.get("initContainers") or []) + (spec.get("containers") or [])


class Index:
    def __init__(self, objs):
        self.objs = objs  # (file, doc)
        self.by = {}
        for f, d in objs:
            key = (d.get("kind"), (d.get("metadata") or {}).get("namespace"),
                   (d.get("metadata") or {}).get("name"))
            self.by.setdefault(key, []).append((f, d))

    def get(self, kind, ns, name):
        return [d for _, d in self.by.get((kind, ns, name), [])]

    def keys(self, kind, ns, name):
        ks = set()
        for d in self.get(kind, ns, name):
            ks |= set(d.get("data") or {}) | set(d.get("stringData") or {}) | set(
                d.get("binaryData") or {})
        return ks


def mount_source(path, mounts, vols):
    """The (mount, volume) whose mountPath holds path, the longest first."""
    best = None
    for m in mounts:
        mp = m.get("mountPath", "").rstrip("/")
        if path == mp or path.startswith(mp + "/"):
            if best is None or len(mp) > len(best[0].get("mountPath", "")):
                best = (m, vols.get(m.get("name")))
    return best


def file_in_volume(path, m, vol, ns, idx):
    """None when path (a file) is provided by mount m of volume vol, else why not."""
    if vol is None:
        return "%s: its mount names no volume" % path
    rel = path[len(m["mountPath"].rstrip("/")) + 1:]
    for kind, src, name_key in (("ConfigMap", vol.get("configMap"), "name"),
                                ("Secret", vol.get("secret"), "secretName")):
        if src is None:
            continue
        name = src.get(name_key)
        if not idx.get(kind, ns, name):
            return "%s: %s %s is not in the manifests" % (path, kind, name)
        items = src.get("items")
        keys = {i["path"]: i["key"] for i in items} if items else {
            k: k for k in idx.keys(kind, ns, name)}
        if rel not in keys:
            return "%s: %s %s has no key %r" % (path, kind, name, rel)
        if keys[rel] not in idx.keys(kind, ns, name):
            return "%s: %s %s has no key %r" % (path, kind, name, keys[rel])
        return None
    return "%s: mount %s is not a ConfigMap or Secret" % (path, m.get("name"))


def service_port(idx, ns, hostport):
    host, _, port = hostport.rpartition(":")
    short = host
    for suf in (".%s.svc.cluster.local" % ns, ".%s.svc" % ns, ".%s" % ns):
        if short.endswith(suf):
            short = short[:-len(suf)]
    svcs = idx.get("Service", ns, short)
    if not svcs:
        return "%s: no Service %s in namespace %s" % (hostport, short, ns)
    for s in svcs:
        spec = s.get("spec") or {}
        if spec.get("type") == "ExternalName":
            return None
        if any(str(p.get("port")) == port for p in spec.get("ports") or []):
            return None
    return "%s: Service %s has no port %s" % (hostport, short, port)


def check_rdmesh(f, doc, c, tmpl, idx, chain, errs):
    where = "%s %s container %s" % (doc["kind"], doc["metadata"]["name"], c.get("name"))
    ns = doc["metadata"].get("namespace")
    args = list(c.get("command") or []) + list(c.get("args") or [])
    if c.get("image") != RDMESH_IMAGE:
        errs.append("%s: image %r, not %s" % (where, c.get("image"), RDMESH_IMAGE))
    if not args or args[0] not in RDMESH_OPTS:
        errs.append("%s: args %r: not `orch ...` or `node ...`" % (where, args[:1]))
        return
    sub, opts, i = args[0], {}, 1
    while i < len(args):
        a = args[i]
        if a not in RDMESH_OPTS[sub]:
            errs.append("%s: `rdmesh %s` has no option %r (the interface: %s)" % (
                where, sub, a, " ".join(sorted(RDMESH_OPTS[sub]))))
            i += 2 if a.startswith("--") and i + 1 < len(args) and not args[i + 1].startswith(
                "--") else 1
            continue
        if i + 1 >= len(args) or args[i + 1].startswith("--"):
            errs.append("%s: %s without a value" % (where, a))
            i += 1
            continue
        if a in opts:
            errs.append("%s: %s given twice" % (where, a))
        opts[a] = args[i + 1]
        i += 2
    for a in RDMESH_REQUIRED[sub]:
        if a not in opts:
            errs.append("%s: `rdmesh %s` without %s" % (where, sub, a))
    env = {e.get("name") for e in c.get("env") or []}
    for a in args:
        for v in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", a):
            if v not in env:
                errs.append("%s: $(%s) in %r is no env var of the container" % (where, v, a))
    mounts = c.get("volumeMounts") or []
    vols = {v.get("name"): v for v in (tmpl.get("spec") or {}).get("volumes") or []}

    def a_file(opt):
        if opt not in opts:
            return
        src = mount_source(opts[opt], mounts, vols)
        if src is None:
            errs.append("%s: %s %s: no volume is mounted there" % (where, opt, opts[opt]))
            return
        why = file_in_volume(opts[opt], src[0], src[1], ns, idx)
        if why:
            errs.append("%s: %s %s" % (where, opt, why))

    def a_dir(opt, writable, files=()):
        if opt not in opts:
            return
        m = [m for m in mounts if m.get("mountPath", "").rstrip("/") == opts[opt].rstrip("/")]
        if not m:
            errs.append("%s: %s %s is not a mount of its own" % (where, opt, opts[opt]))
            return
        vol = vols.get(m[0].get("name")) or {}
        if writable and ("emptyDir" not in vol or m[0].get("readOnly")):
            errs.append("%s: %s %s must be a writable emptyDir" % (where, opt, opts[opt]))
        for fn in files:
            why = file_in_volume(opts[opt].rstrip("/") + "/" + fn, m[0], vol, ns, idx)
            if why:
                errs.append("%s: %s %s" % (where, opt, why))

    if sub == "orch":
        a_file("--rack")
        a_file("--chain")
        a_dir("--certs", False, ORCH_CERT_FILES)
        st = opts.get("--store", "")
        if not st.startswith("etcd://"):
            errs.append("%s: --store %r is not etcd://..." % (where, st))
        else:
            for ep in st[7:].split("/")[0].split(","):
                why = service_port(idx, ns, ep)
                if why and "." not in ep.rpartition(":")[0]:
                    errs.append("%s: --store %s" % (where, why))
        if "$(POD_IP)" not in opts.get("--advertise", "$(POD_IP)"):
            errs.append("%s: --advertise is not the pod's own address" % where)
    else:
        a_file("--join")
        a_file("--ca")
        a_dir("--certs", True)
        a_dir("--dir", True)
        for ep in opts.get("--orch", "").split(","):
            if ep:
                why = service_port(idx, ns, ep)
                if why:
                    errs.append("%s: --orch %s" % (where, why))
        if opts.get("--name") not in (None, "$(POD_NAME)"):
            errs.append("%s: --name should be the pod's name, $(POD_NAME)" % where)
        pn = [e for e in c.get("env") or [] if e.get("name") == "POD_NAME"]
        if pn and ((pn[0].get("valueFrom") or {}).get("fieldRef") or {}).get(
                "fieldPath") != "metadata.name":
            errs.append("%s: POD_NAME is not the downward API's metadata.name" % where)
        stage = opts.get("--stage")
        if chain is not None and stage is not None:
            st = [s for s in chain.get("stages") or [] if s.get("name") == stage]
            pods = (st[0].get("pods") or {}) if st else {}
            if not st:
                errs.append("%s: --stage %s is no stage of chain.yaml" % (where, stage))
            elif pods.get("deployment") != doc["metadata"]["name"] or pods.get(
                    "namespace") != ns:
                errs.append("%s: chain.yaml's stage %s has pods %r, not this Deployment" % (
                    where, stage, pods))
        caps = ((c.get("securityContext") or {}).get("capabilities") or {}).get("add") or []
        if "IPC_LOCK" not in caps:
            errs.append("%s: no IPC_LOCK capability (RDMA registers memory)" % where)
        lim = (c.get("resources") or {}).get("limits") or {}
        if not any(k.startswith("rdma/") or "sriov" in k or k.endswith("_vf") for k in lim):
            errs.append("%s: asks for no RDMA device resource" % where)
        offered = rdma_resources(idx)
        for k in lim:
            if k.startswith("rdma/") and offered is not None and k not in offered:
                errs.append("%s: resource %s is not one the RDMA device plugin's ConfigMap "
                            "offers (%s)" % (where, k, ", ".join(sorted(offered))))


def rdma_resources(idx):
    """The resources the RDMA shared device plugin's ConfigMap offers, None if absent."""
    cms = idx.get("ConfigMap", "kube-system", "rdma-devices")
    if not cms:
        return None
    try:
        conf = json.loads((cms[0].get("data") or {}).get("config.json", ""))
    except ValueError:
        return set()
    prefix = conf.get("resourcePrefix", "rdma")
    return {"%s/%s" % (prefix, c.get("resourceName")) for c in conf.get("configList") or []}


def check_refs(f, doc, idx, chain, errs):
    kind, meta = doc.get("kind"), doc.get("metadata") or {}
    ns, name = meta.get("namespace"), meta.get("name")
    tmpl, sel = pod_templates(doc)
    if tmpl is not None:
        labels = (tmpl.get("metadata") or {}).get("labels") or {}
        if not sel or any(labels.get(k) != v for k, v in sel.items()):
            errs.append("%s %s: selector %r does not match the template's labels" % (
                kind, name, sel))
        spec = tmpl.get("spec") or {}
        vols = {v.get("name"): v for v in spec.get("volumes") or []}
        for v in vols.values():
            for k2, src, nk in (("ConfigMap", v.get("configMap"), "name"),
                                ("Secret", v.get("secret"), "secretName")):
                if src is None:
                    continue
                if not idx.get(k2, ns, src.get(nk)):
                    errs.append("%s %s: volume %s: %s %s is not in the manifests" % (
                        kind, name, v.get("name"), k2, src.get(nk)))
                for it in src.get("items") or []:
                    if it.get("key") not in idx.keys(k2, ns, src.get(nk)):
                        errs.append("%s %s: volume %s: %s %s has no key %r" % (
                            kind, name, v.get("name"), k2, src.get(nk), it.get("key")))
        claims = {c["metadata"]["name"] for c in (doc.get("spec") or {}).get(
            "volumeClaimTemplates") or []}
        nets = ((tmpl.get("metadata") or {}).get("annotations") or {}).get(
            "k8s.v1.cni.cncf.io/networks")
        if nets:
            for n in nets.split(","):
                n = n.strip().split("@")[0]
                nns, _, nn = n.rpartition("/")
                if not idx.get("NetworkAttachmentDefinition", nns or ns, nn):
                    errs.append("%s %s: Multus network %s is not in the manifests" % (
                        kind, name, n))
        for c in containers(tmpl):
            where = "%s %s container %s" % (kind, name, c.get("name"))
            if c.get("imagePullPolicy") != "IfNotPresent":
                errs.append("%s: imagePullPolicy %r, not IfNotPresent" % (
                    where, c.get("imagePullPolicy")))
            ports = {p.get("name") for p in c.get("ports") or []}
            for m in c.get("volumeMounts") or []:
                if m.get("name") not in vols and m.get("name") not in claims:
                    errs.append("%s: mount %s names no volume" % (where, m.get("name")))
            for pr in ("readinessProbe", "livenessProbe", "startupProbe"):
                p = c.get(pr) or {}
                port = (p.get("tcpSocket") or p.get("httpGet") or {}).get("port")
                if isinstance(port, str) and port not in ports:
                    errs.append("%s: %s port %r is no named port" % (where, pr, port))
            for e in c.get("env") or []:
                fr = ((e.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath")
                if fr and fr not in ("metadata.name", "metadata.namespace", "metadata.uid",
                                     "spec.nodeName", "spec.serviceAccountName",
                                     "status.hostIP", "status.podIP", "status.podIPs"):
                    errs.append("%s: env %s: fieldPath %r" % (where, e.get("name"), fr))
            if "rdmesh" in str(c.get("image", "")):
                check_rdmesh(f, doc, c, tmpl, idx, chain, errs)
    if kind == "Service":
        spec = doc.get("spec") or {}
        if spec.get("type") != "ExternalName":
            sel = spec.get("selector") or {}
            pods = [t for _, d in idx.objs for t in [pod_templates(d)[0]]
                    if t is not None and (d.get("metadata") or {}).get("namespace") == ns
                    and sel and all(((t.get("metadata") or {}).get("labels") or {}).get(k) == v
                                    for k, v in sel.items())]
            if not pods:
                errs.append("Service %s: its selector %r matches no pod template" % (name, sel))
            for p in spec.get("ports") or []:
                tp = p.get("targetPort")
                if isinstance(tp, str) and pods and not any(
                        tp in {q.get("name") for c in containers(t) for q in c.get("ports") or []}
                        for t in pods):
                    errs.append("Service %s: targetPort %r is no named port of its pods" % (
                        name, tp))
        elif not spec.get("externalName"):
            errs.append("Service %s: ExternalName without externalName" % name)
    if kind == "PodDisruptionBudget":
        sel = ((doc.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        if not any(t is not None and all(((t.get("metadata") or {}).get("labels") or {}).get(
                k) == v for k, v in sel.items()) for _, d in idx.objs
                   for t in [pod_templates(d)[0]]):
            errs.append("PodDisruptionBudget %s: selects no pod template" % name)
    if kind == "ConfigMap" and name == "rdma-devices":
        try:
            conf = json.loads((doc.get("data") or {}).get("config.json", ""))
            if not all(c.get("resourceName") for c in conf["configList"]):
                errs.append("ConfigMap %s: a configList entry without resourceName" % name)
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            errs.append("ConfigMap %s: config.json: %s" % (name, e))
    if kind == "Secret":
        for k, v in (doc.get("data") or {}).items():
            try:
                base64.b64decode(v or "", validate=True)
            except ValueError:
                errs.append("Secret %s: data.%s is not base64" % (name, k))


def check_config(root, idx):
    """The ConfigMap rdmesh-config: (ok, what) lines."""
    out = []
    cms = idx.get("ConfigMap", "rdmesh", "rdmesh-config")
    if not cms:
        return [("fail", "ConfigMap rdmesh-config: not in the manifests")], None
    data = cms[0].get("data") or {}
    errs = []
    try:
        chain = yaml.load(data.get("chain.yaml", ""), Loader=DupLoader) or {}
        rack = yaml.load(data.get("rack.yaml", ""), Loader=DupLoader) or {}
    except yaml.YAMLError as e:
        return [("fail", "ConfigMap rdmesh-config: %s" % e)], None
    with open(os.path.join(root, "configs", "chain.yaml")) as fh:
        ref = yaml.safe_load(fh)

    def run_names(st):
        return [r if isinstance(r, str) else r.get("name") for r in st.get("run") or []]

    got = [(s.get("name"), run_names(s)) for s in chain.get("stages") or []]
    want = [(s.get("name"), run_names(s)) for s in ref.get("stages") or []]
    if got != want:
        errs.append("chain.yaml's stages %r are not configs/chain.yaml's %r" % (got, want))
    for s in chain.get("stages") or []:
        pods = s.get("pods")
        if not isinstance(pods, dict) or set(pods) != {"deployment", "namespace"}:
            errs.append("stage %s: pods should be {deployment, namespace}, is %r" % (
                s.get("name"), pods))
            continue
        if not idx.get("Deployment", pods["namespace"], pods["deployment"]):
            errs.append("stage %s: Deployment %s/%s is not in the manifests" % (
                s.get("name"), pods["namespace"], pods["deployment"]))
        for r in s.get("run") or []:
            if isinstance(r, dict):
                for k in ("directory", "file"):
                    p = r.get(k)
                    if p and not os.path.isabs(p) and p not in data:
                        errs.append("stage %s: %s %s: no such key in the ConfigMap" % (
                            s.get("name"), k, p))
    if "nodes" not in rack or not isinstance(rack.get("nodes"), list):
        errs.append("rack.yaml: no nodes list")
    try:
        pol = yaml.safe_load(data.get("policy.yaml", "")) or {}
        for rule in pol.get("rules") or []:
            for h in ((rule.get("match") or {}).get("host") or []):
                if isinstance(h, dict) and h.get("file") not in data:
                    errs.append("policy.yaml: host file %s is no key" % h.get("file"))
    except yaml.YAMLError as e:
        errs.append("policy.yaml: %s" % e)
    out.append(("fail" if errs else "ok", "ConfigMap rdmesh-config: " + (
        "; ".join(errs) if errs else
        "chain.yaml has configs/chain.yaml's stages (%s), each pod-backed by a Deployment "
        "here; the files it names are keys" % ", ".join(n for n, _ in got))))
    diff = []
    for name in COPIED_CONFIGS:
        with open(os.path.join(root, "configs", name)) as fh:
            if data.get(name) != fh.read():
                diff.append(name)
    out.append(("fail" if diff else "ok",
                "ConfigMap rdmesh-config: %s" % (
                    "differs from configs/: %s (copy the file into 10-config.yaml, indented "
                    "4 spaces)" % ", ".join(diff) if diff else
                    "copies of configs/%s are identical" % ", configs/".join(COPIED_CONFIGS))))
    return out, chain


def check(root, files):
    objs, per = [], {}
    for f in files:
        errs = []
        try:
            with open(f) as fh:
                text = fh.read()
            docs = load_all(text)
        except (OSError, yaml.YAMLError) as e:
            per[f] = (["YAML: %s" % str(e).replace("\n", " ")], [])
            continue
        if not text.startswith("#"):
            errs.append("no header comment on the first line")
        if not docs:
            errs.append("no object")
        for i, d in enumerate(docs):
            if not isinstance(d, dict):
                errs.append("document %d is not a mapping" % (i + 1))
                continue
            meta = d.get("metadata") or {}
            for k in ("apiVersion", "kind"):
                if not d.get(k):
                    errs.append("document %d: no %s" % (i + 1, k))
            if not meta.get("name"):
                errs.append("document %d: no metadata.name" % (i + 1))
            if d.get("kind") not in CLUSTER_SCOPED and not meta.get("namespace"):
                errs.append("%s %s: no metadata.namespace" % (d.get("kind"), meta.get("name")))
            objs.append((f, d))
        per[f] = (errs, [d for d in docs if isinstance(d, dict)])
    idx = Index(objs)
    for key, lst in idx.by.items():
        fs = sorted({f for f, _ in lst})
        if len(lst) > 1 and not (len(fs) == 2 and sum("/optional/" in x for x in fs) == 1):
            per[lst[-1][0]][0].append("%s %s/%s defined twice (%s)" % (
                key[0], key[1], key[2], ", ".join(fs)))
    cross, chain = check_config(root, idx)
    for f in files:
        errs, docs = per[f]
        for d in docs:
            path = "%s %s" % (d.get("kind"), (d.get("metadata") or {}).get("name"))
            if d.get("kind") == "NetworkAttachmentDefinition":
                check_nad(d, path, errs)
            else:
                cls = getattr(models(), model_name(d), None)
                if cls is None:
                    errs.append("%s: %s/%s has no schema here" % (
                        path, d.get("apiVersion"), d.get("kind")))
                else:
                    walk(d, model_name(d), path, errs)
            check_refs(f, d, idx, chain, errs)
        what = ", ".join("%s %s" % (d.get("kind"), (d.get("metadata") or {}).get("name"))
                         for d in docs)
        print("%s\t%s\t%s" % (f, "fail" if errs else "ok", "; ".join(errs) if errs else what))
    for st, what in cross:
        print("-\t%s\t%s" % (st, what))
    return 0


# ---- a stand-in API server for kubectl ---------------------------------------------

# Discovery as a Kubernetes 1.2x API server answers it, for the kinds the manifests use.
RESOURCES = {
    "/api/v1": ("v1", [("namespaces", "Namespace", False), ("configmaps", "ConfigMap", True),
                       ("secrets", "Secret", True), ("services", "Service", True),
                       ("pods", "Pod", True), ("serviceaccounts", "ServiceAccount", True),
                       ("persistentvolumeclaims", "PersistentVolumeClaim", True)]),
    "/apis/apps/v1": ("apps/v1", [("deployments", "Deployment", True),
                                  ("statefulsets", "StatefulSet", True),
                                  ("daemonsets", "DaemonSet", True)]),
    "/apis/policy/v1": ("policy/v1", [("poddisruptionbudgets", "PodDisruptionBudget", True)]),
    "/apis/k8s.cni.cncf.io/v1": ("k8s.cni.cncf.io/v1", [
        ("network-attachment-definitions", "NetworkAttachmentDefinition", True)]),
}


def serve(portfile):
    from http.server import BaseHTTPRequestHandler, HTTPServer

    verbs = ["create", "delete", "get", "list", "patch", "update", "watch"]
    groups = []
    for path, (gv, _) in RESOURCES.items():
        if "/" in gv:
            g, v = gv.split("/")
            groups.append({"name": g, "versions": [{"groupVersion": gv, "version": v}],
                           "preferredVersion": {"groupVersion": gv, "version": v}})
    docs = {
        "/version": {"major": "1", "minor": "22", "gitVersion": "v1.22.0-discovery-only"},
        "/api": {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]},
        "/apis": {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups},
    }
    for path, (gv, res) in RESOURCES.items():
        docs[path] = {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
                      "resources": [{"name": n, "singularName": k.lower(), "namespaced": ns,
                                     "kind": k, "verbs": verbs} for n, k, ns in res]}

    class H(BaseHTTPRequestHandler):
        def reply(self, code, body):
            b = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(b)))
            self.end_headers()
            self.wfile.write(b)

        def do_GET(self):
            path = self.path.split("?")[0].rstrip("/") or "/"
            if path in docs:
                self.reply(200, docs[path])
            else:  # no object exists; no OpenAPI document is served
                self.reply(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                 "reason": "NotFound", "code": 404,
                                 "message": "%s: not served (discovery only)" % path})

        def log_message(self, *a):
            pass

    srv = HTTPServer(("127.0.0.1", 0), H)
    with open(portfile + ".tmp", "w") as fh:
        fh.write(str(srv.server_address[1]))
    os.rename(portfile + ".tmp", portfile)
    srv.serve_forever()


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "serve":
        serve(sys.argv[2])
    elif len(sys.argv) >= 4 and sys.argv[1] == "check":
        sys.exit(check(sys.argv[2], sys.argv[3:]))
    else:
        sys.stderr.write(__doc__)
        sys.exit(2)
