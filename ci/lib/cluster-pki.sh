# PKI and kubeconfigs of the local cluster (openssl, one CA). Sourced by ci/cluster.
# shellcheck shell=bash

# ECDSA P-256 keys: as secure as RSA-3072 and ~50x faster to generate than RSA on 2 busy cores.
_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null || die "pki: key generation failed"; }

# _cert NAME SUBJ [SANS] [EKU] [CA]: a key and a certificate signed by the cluster CA (or by CA,
# the base name of another CA in $PKI).
_cert() {
  local name=$1 subj=$2 sans=${3:-} eku=${4:-clientAuth} ca=${5:-ca}
  _key "$PKI/$name.key"
  openssl req -new -key "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr" 2>/dev/null
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$eku"
    [ -n "$sans" ] && echo "subjectAltName=$sans"
  } >"$PKI/$name.ext"
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/$ca.crt" -CAkey "$PKI/$ca.key" -CAcreateserial \
    -days 365 -sha256 -extfile "$PKI/$name.ext" -out "$PKI/$name.crt" 2>/dev/null \
    || die "pki: signing $name failed"
  rm -f "$PKI/$name.csr" "$PKI/$name.ext"
}

# _kubeconfig FILE CERTNAME: a kubeconfig with the CA and client certificate embedded.
_kubeconfig() {
  local file=$1 cert=$2
  cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: payplane-local
  cluster:
    server: https://$NODE_IP:$APISERVER_PORT
    certificate-authority-data: $(base64 -w0 "$PKI/ca.crt")
users:
- name: $cert
  user:
    client-certificate-data: $(base64 -w0 "$PKI/$cert.crt")
    client-key-data: $(base64 -w0 "$PKI/$cert.key")
contexts:
- name: payplane-local
  context: {cluster: payplane-local, user: $cert}
current-context: payplane-local
EOF
  chmod 600 "$file"
}

# _ca NAME CN: a self-signed CA key and certificate.
_ca() {
  _key "$PKI/$1.key"
  openssl req -x509 -new -key "$PKI/$1.key" -subj "/CN=$2" -days 3650 -sha256 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
    -out "$PKI/$1.crt" 2>/dev/null || die "pki: creating the CA $1 failed"
}

make_pki() {
  local t=$SECONDS
  mkdir -p "$PKI" && chmod 700 "$PKI"
  _ca ca payplane-local-ca
  _key "$PKI/sa.key"
  openssl pkey -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  _cert apiserver "/CN=kube-apiserver" \
    "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,IP:127.0.0.1,IP:$KUBERNETES_SVC_IP,IP:$NODE_IP" serverAuth
  _cert apiserver-kubelet-client "/CN=kube-apiserver-kubelet-client"
  _cert admin "/O=system:masters/CN=payplane-admin"
  _cert kube-controller-manager "/CN=system:kube-controller-manager"
  _cert kube-scheduler "/CN=system:kube-scheduler"
  _cert kubelet "/O=system:nodes/CN=system:node:$NODE_NAME"
  _cert kubelet-server "/CN=$NODE_NAME" "DNS:$NODE_NAME,IP:$NODE_IP" serverAuth
  _cert kube-proxy "/CN=system:kube-proxy"
  _cert prometheus "/CN=payplane:prometheus"
  _cert kwok "/CN=payplane:kwok"
  local c
  for c in admin kube-controller-manager kube-scheduler kubelet kube-proxy prometheus kwok; do
    _kubeconfig "$PKI/$c.kubeconfig" "$c"
  done
  cp "$PKI/admin.kubeconfig" "$ADMIN_KUBECONFIG"
  aggregation_pki
  log "pki: 2 CAs, 12 certificates and 7 kubeconfigs in $PKI ($((SECONDS - t)) s)"
}

# aggregation_pki: what the aggregation layer and metrics-server need, made only where missing (so
# that `up` on a cluster made before these existed adds them without touching the rest):
# * front-proxy-ca: its own CA (as kubeadm does): a certificate the apiserver accepts as a proxy
#   (--requestheader-client-ca-file) must not be one that any cluster client certificate could be;
# * front-proxy-client: the apiserver's client certificate towards aggregated API servers;
# * metrics-server: its serving certificate (cluster CA; the APIService's caBundle is the cluster CA).
aggregation_pki() {
  mkdir -p "$PKI" && chmod 700 "$PKI"
  [ -f "$PKI/front-proxy-ca.crt" ] || { _ca front-proxy-ca payplane-local-front-proxy-ca; rm -f "$PKI/front-proxy-client.crt"; }
  [ -f "$PKI/front-proxy-client.crt" ] || _cert front-proxy-client "/CN=front-proxy-client" "" clientAuth front-proxy-ca
  [ -f "$PKI/metrics-server.crt" ] || _cert metrics-server "/CN=metrics-server.kube-system.svc" \
    "DNS:metrics-server,DNS:metrics-server.kube-system,DNS:metrics-server.kube-system.svc,DNS:metrics-server.kube-system.svc.cluster.local" serverAuth
  true
}
