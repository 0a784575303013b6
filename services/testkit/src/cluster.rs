//! The local Kubernetes cluster (`ci/cluster up`) for integration tests: an admin client, a
//! throw-away namespace per test, and users of our own making (a client certificate signed
//! through the CertificateSigningRequest API), so that tests can act as `alice` and `bob`.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use k8s_openapi::api::{certificates::v1::CertificateSigningRequest, core::v1::Namespace};
use kube::{
    Api, Client,
    api::{DeleteParams, Patch, PatchParams, PostParams},
};
use serde_json::json;

const HINT: &str = "the local cluster is not reachable: run `ci/cluster up && eval \"$(ci/cluster env)\"` \
                    (KUBECONFIG must point at it), then re-run these tests";

/// A client for KUBECONFIG's cluster, or a panic that says how to bring the cluster up.
pub async fn admin_client() -> Client {
    let client = match Client::try_default().await {
        Ok(c) => c,
        Err(e) => panic!("{HINT} ({e})"),
    };
    if let Err(e) = client.apiserver_version().await {
        panic!("{HINT} ({e})");
    }
    client
}

/// A fresh namespace, labelled `payplane.io/test=<owner>` so that leftovers can be found.
pub struct TestNamespace {
    pub client: Client,
    pub name: String,
}

impl TestNamespace {
    pub async fn create(client: &Client, owner: &str, prefix: &str) -> Self {
        let name = format!("{prefix}-{}-{}", std::process::id(), unique() % 1000);
        let ns: Namespace = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"payplane.io/test": owner}}
        }))
        .expect("namespace");
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("create namespace");
        Self {
            client: client.clone(),
            name,
        }
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// Deletes the namespace in the background (what is in it goes with it).
    pub async fn delete(&self) {
        let _ = Api::<Namespace>::all(self.client.clone())
            .delete(&self.name, &DeleteParams::background())
            .await;
    }
}

fn unique() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as u64)
}

/// A kubeconfig for the user `name` in `groups` (certificate subject CN and O's), valid for an
/// hour, written to a private directory; the apiserver is the one of `admin`'s KUBECONFIG.
pub async fn user_kubeconfig(admin: &Client, name: &str, groups: &[&str]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "payplane-user-{name}-{}-{}",
        std::process::id(),
        unique()
    ));
    std::fs::create_dir_all(&dir).expect("user directory");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).expect("chmod 700");
    }
    let key = dir.join("key.pem");
    let csr_pem = dir.join("csr.pem");
    openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        path(&key),
    ]);
    let subject: String = groups
        .iter()
        .map(|g| format!("/O={g}"))
        .chain([format!("/CN={name}")])
        .collect();
    openssl(&[
        "req",
        "-new",
        "-key",
        path(&key),
        "-subj",
        &subject,
        "-out",
        path(&csr_pem),
    ]);
    let certificate = signed(admin, name, &std::fs::read(&csr_pem).expect("csr")).await;
    let cert = dir.join("cert.pem");
    std::fs::write(&cert, certificate).expect("write certificate");

    let admin_config = kube::config::Kubeconfig::read().expect("KUBECONFIG");
    let context = admin_config
        .current_context
        .as_ref()
        .and_then(|c| admin_config.contexts.iter().find(|x| &x.name == c))
        .and_then(|c| c.context.as_ref())
        .expect("current context");
    let cluster = admin_config
        .clusters
        .iter()
        .find(|c| c.name == context.cluster)
        .and_then(|c| c.cluster.as_ref())
        .expect("cluster");
    let yaml = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    certificate-authority-data: {}\n\
         users:\n- name: {name}\n  user:\n    client-certificate: {}\n    client-key: {}\n\
         contexts:\n- name: c\n  context: {{cluster: c, user: {name}, namespace: default}}\ncurrent-context: c\n",
        cluster.server.as_deref().expect("server"),
        cluster.certificate_authority_data.as_deref().expect("CA data"),
        cert.display(),
        key.display(),
    );
    let file = dir.join("kubeconfig");
    std::fs::write(&file, yaml).expect("write kubeconfig");
    file
}

/// A client from a kubeconfig file (a user of [`user_kubeconfig`]).
pub async fn client_from(kubeconfig: &Path) -> Client {
    let text = std::fs::read_to_string(kubeconfig).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::from_yaml(&text).expect("kubeconfig YAML"),
        &Default::default(),
    )
    .await
    .expect("kubeconfig");
    Client::try_from(config).expect("client")
}

/// Has the cluster's signer issue a client certificate for `csr` (PEM).
async fn signed(admin: &Client, name: &str, csr: &[u8]) -> Vec<u8> {
    let csr_name = format!("payplane-test-{name}-{}-{}", std::process::id(), unique());
    let request: CertificateSigningRequest = serde_json::from_value(json!({
        "metadata": {"name": csr_name},
        "spec": {
            "request": k8s_openapi::ByteString(csr.to_vec()),
            "signerName": "kubernetes.io/kube-apiserver-client",
            "usages": ["client auth"],
            "expirationSeconds": 3600,
        },
    }))
    .expect("CSR");
    let csrs: Api<CertificateSigningRequest> = Api::all(admin.clone());
    csrs.create(&PostParams::default(), &request)
        .await
        .expect("create CSR");
    let approval = json!({"status": {"conditions": [{
        "type": "Approved", "status": "True", "reason": "PayplaneTest", "message": "test user",
    }]}});
    csrs.patch_approval(&csr_name, &PatchParams::default(), &Patch::Merge(approval))
        .await
        .expect("approve CSR");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let certificate = loop {
        if let Some(c) = csrs.get(&csr_name).await.ok().and_then(|c| c.status?.certificate) {
            break c.0;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no certificate issued for {name} within 30 s: is the kube-controller-manager's signer \
             (--cluster-signing-cert-file) configured?"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let _ = csrs.delete(&csr_name, &DeleteParams::default()).await;
    certificate
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

fn openssl(args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl (the cluster's PKI needs it too)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Applies (server-side, as `manager`) the CRDs and waits until the apiserver serves them.
pub async fn apply_crds(
    client: &Client,
    manager: &str,
    crds: Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>,
) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in crds {
        let name = crd.metadata.name.clone().expect("CRD name");
        api.patch(&name, &PatchParams::apply(manager).force(), &Patch::Apply(&crd))
            .await
            .expect("install CRD");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let established = api
                .get(&name)
                .await
                .ok()
                .and_then(|c| c.status)
                .and_then(|s| s.conditions)
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Established" && c.status == "True"));
            if established {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "CRD {name} not established in 30 s"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Applies the ValidatingAdmissionPolicies and bindings of the YAML `files` (server-side).
pub async fn apply_admission_policies(client: &Client, manager: &str, files: &[PathBuf]) {
    use k8s_openapi::api::admissionregistration::v1::{
        ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
    };
    for file in files {
        let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text).expect("YAML");
        for doc in docs {
            let name = doc["metadata"]["name"].as_str().expect("name").to_owned();
            let pp = PatchParams::apply(manager).force();
            match doc["kind"].as_str().expect("kind") {
                "ValidatingAdmissionPolicy" => {
                    Api::<ValidatingAdmissionPolicy>::all(client.clone())
                        .patch(&name, &pp, &Patch::Apply(&doc))
                        .await
                        .expect("apply policy");
                }
                "ValidatingAdmissionPolicyBinding" => {
                    Api::<ValidatingAdmissionPolicyBinding>::all(client.clone())
                        .patch(&name, &pp, &Patch::Apply(&doc))
                        .await
                        .expect("apply binding");
                }
                other => panic!("unexpected kind {other} in {}", file.display()),
            }
        }
    }
}
