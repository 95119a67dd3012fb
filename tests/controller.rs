//! `portcullis controller` against a real API server (tests/cluster): each test gets its own
//! namespace, a ServiceAccount bound to exactly the RBAC the Helm chart grants (its ClusterRole
//! and its leader-election Role, rendered from charts/portcullis), and runs the controller as a
//! process with that account's token, so a rule missing from the chart fails the test. Upstreams are local HTTP servers on this machine's non-loopback address (the API
//! server refuses loopback EndpointSlice addresses).

mod support;

use std::time::{Duration, Instant};

use support::controller::{
    APISERVER, Env, cluster, ingress_yaml, script, service_yaml, slice_yaml, tls_secret_yaml,
    upstream_of,
};
use support::idp::{Browser, Idp, idp_config};
use support::{TestCa, Upstream, free_port};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingress_and_policy_become_routes_and_converge() {
    let _shared = APISERVER.read().await;
    let env = Env::start("routes", true, &["--publish-address", "203.0.113.7"]).await;
    let ip = env.cluster.host_ip.clone();
    let a = Upstream::start_on(&ip, "a").await;
    let port = a.addr.port();
    env.must_apply(&service_yaml("web"));
    env.must_apply(&slice_yaml("web", port, &[(&ip, true)]));
    env.must_apply(&ingress_yaml(
        "public",
        "public.test",
        "web",
        &[("portcullis.dev/allow_public_unauthenticated_access", "true")],
    ));
    env.until("public.test", "/x", "public route serves", |s, b| {
        s == 200 && upstream_of(b) == "a"
    })
    .await;

    // A Policy object by name: only the listed source range is allowed.
    let policy = |cidr: &str| {
        format!(
            "apiVersion: portcullis.dev/v1alpha1
kind: Policy
metadata: {{name: net}}
spec:
  allow:
    or:
    - source_ip: {cidr}
"
        )
    };
    env.must_apply(&policy("203.0.113.0/24"));
    env.must_apply(&ingress_yaml(
        "guarded",
        "guarded.test",
        "web",
        &[("ingress.pomerium.io/policies", "net")],
    ));
    env.until("guarded.test", "/", "policy denies", |s, _| s == 403)
        .await;
    env.until_kubectl(
        &[
            "get",
            "policy",
            "net",
            "-o",
            "jsonpath={.status.conditions[0].status}",
        ],
        "Policy accepted",
        |o| o == "True",
    )
    .await;
    env.must_apply(&policy("127.0.0.0/8"));
    env.until("guarded.test", "/", "edited policy allows", |s, _| s == 200)
        .await;

    // Scale: a second ready endpoint joins (same port, another upstream on another port
    // needs another slice).
    let b = Upstream::start_on(&ip, "b").await;
    env.must_apply(&slice_yaml("web", b.addr.port(), &[(&ip, true)]));
    let client = env.client(&["public.test"]);
    let url = format!("http://public.test:{}/", env.port);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..6 {
            if let Ok(r) = client.get(&url).send().await {
                seen.insert(upstream_of(&r.text().await.unwrap_or_default()));
            }
        }
        if seen.contains("a") && seen.contains("b") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "both endpoints never served: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // a not ready → only b (several answers in a row, as round-robin alternates).
    env.must_apply(&slice_yaml("web", port, &[(&ip, false)]));
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut in_a_row = 0;
    while in_a_row < 6 {
        let (s, body) = env.get("public.test", "/").await;
        if (s, upstream_of(&body).as_str()) == (200, "b") {
            in_a_row += 1;
        } else {
            in_a_row = 0;
        }
        assert!(
            Instant::now() < deadline,
            "the not-ready endpoint kept serving"
        );
    }
    // No endpoints at all → 503.
    env.k(&["delete", "endpointslice", &format!("web-{}", b.addr.port())])
        .expect("delete slice");
    env.until("public.test", "/", "no endpoints gives 503", |s, _| {
        s == 503
    })
    .await;
    // The leader wrote the published address into the status of our Ingresses.
    env.until_kubectl(
        &[
            "get",
            "ingress",
            "public",
            "-o",
            "jsonpath={.status.loadBalancer.ingress[0].ip}",
        ],
        "Ingress status",
        |o| o == "203.0.113.7",
    )
    .await;
    // An Ingress of another class is neither served nor given a status (conformance).
    env.must_apply(
        &ingress_yaml("foreign", "foreign.test", "web", &[]).replace(
            "ingressClassName: portcullis",
            "ingressClassName: someone-else",
        ),
    );
    env.must_apply(&ingress_yaml(
        "public2",
        "public2.test",
        "web",
        &[("portcullis.dev/allow_public_unauthenticated_access", "true")],
    ));
    env.until_kubectl(
        &[
            "get",
            "ingress",
            "public2",
            "-o",
            "jsonpath={.status.loadBalancer.ingress[0].ip}",
        ],
        "status of an Ingress applied after the foreign one",
        |o| o == "203.0.113.7",
    )
    .await;
    assert_eq!(
        env.get("foreign.test", "/").await.0,
        404,
        "another class is not served"
    );
    let foreign_status = env
        .k(&[
            "get",
            "ingress",
            "foreign",
            "-o",
            "jsonpath={.status.loadBalancer}",
        ])
        .expect("get foreign");
    assert!(
        !foreign_status.contains("203.0.113.7"),
        "another class got our status: {foreign_status}"
    );
    // Delete → gone.
    env.k(&["delete", "ingress", "public"])
        .expect("delete ingress");
    env.until("public.test", "/", "deleted Ingress", |s, _| s == 404)
        .await;
    assert_eq!(env.get("guarded.test", "/").await.0, 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_policies_are_refused_or_reported() {
    let _shared = APISERVER.read().await;
    let env = Env::start("policies", true, &[]).await;
    // Shape errors: the API server refuses them at apply.
    let unknown_operator = "apiVersion: portcullis.dev/v1alpha1
kind: Policy
metadata: {name: xor}
spec:
  allow:
    xor:
    - email: {is: a@b.test}
";
    let err = env
        .apply(unknown_operator)
        .expect_err("unknown operator refused");
    assert!(err.contains("spec.allow.xor"), "{err}");
    let two_keys = "apiVersion: portcullis.dev/v1alpha1
kind: Policy
metadata: {name: twokeys}
spec:
  deny:
    or:
    - email: {is: a@b.test}
      domain: {is: b.test}
";
    let err = env
        .apply(two_keys)
        .expect_err("two criteria in one item refused");
    assert!(err.contains("spec.deny.or[0]"), "{err}");

    // A semantic error: accepted by the API server, reported in status with its position.
    env.must_apply(
        "apiVersion: portcullis.dev/v1alpha1
kind: Policy
metadata: {name: typo}
spec:
  allow:
    or:
    - emial: {is: a@b.test}
",
    );
    let message = env
        .until_kubectl(
            &[
                "get",
                "ppl",
                "typo",
                "-o",
                "jsonpath={.status.conditions[0].status} {.status.conditions[0].message}",
            ],
            "Policy status False",
            |o| o.starts_with("False "),
        )
        .await;
    assert!(message.contains("spec.allow.or[0].emial"), "{message}");
    assert!(message.contains("line "), "{message}");
    let printed = env.k(&["get", "ppl", "typo"]).expect("get ppl");
    assert!(
        printed.contains("ACCEPTED") && printed.contains("False"),
        "{printed}"
    );

    // An Ingress naming it is not served, with a Warning.
    env.must_apply(&service_yaml("web"));
    env.must_apply(&ingress_yaml(
        "uses-typo",
        "typo.test",
        "web",
        &[("portcullis.dev/policies", "typo")],
    ));
    env.until_event("Warning", "PolicyInvalid", "typo").await;
    assert_eq!(env.get("typo.test", "/").await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_annotation_rejects_only_that_ingress() {
    let _shared = APISERVER.read().await;
    let env = Env::start("annotations", true, &[]).await;
    let ip = env.cluster.host_ip.clone();
    let a = Upstream::start_on(&ip, "a").await;
    env.must_apply(&service_yaml("web"));
    env.must_apply(&slice_yaml("web", a.addr.port(), &[(&ip, true)]));
    let public = ("portcullis.dev/allow_public_unauthenticated_access", "true");
    env.must_apply(&ingress_yaml("good", "good.test", "web", &[public]));
    env.must_apply(&ingress_yaml(
        "bad",
        "bad.test",
        "web",
        &[public, ("portcullis.dev/timeuot", "5s")],
    ));
    env.until_event("Warning", "UnknownAnnotation", "portcullis.dev/timeuot")
        .await;
    env.until("good.test", "/", "the good Ingress serves", |s, _| s == 200)
        .await;
    assert_eq!(env.get("bad.test", "/").await.0, 404);
    // Fixed → served, with a Normal Event.
    env.must_apply(&ingress_yaml(
        "bad",
        "bad.test",
        "web",
        &[public, ("portcullis.dev/timeout", "5s")],
    ));
    env.until("bad.test", "/", "the fixed Ingress serves", |s, _| s == 200)
        .await;
    env.until_event("Normal", "Served", "").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_secrets_are_served_by_sni_and_rotated() {
    let _shared = APISERVER.read().await;
    let env = Env::start("tls", false, &[]).await;
    let ip = env.cluster.host_ip.clone();
    let a = Upstream::start_on(&ip, "a").await;
    env.must_apply(&service_yaml("web"));
    env.must_apply(&slice_yaml("web", a.addr.port(), &[(&ip, true)]));
    let (ca1, ca2) = (TestCa::new(), TestCa::new());
    let (cert1, key1) = ca1.issue(&["secure.test"]);
    env.must_apply(&tls_secret_yaml("secure-tls", &cert1, &key1));
    let mut ingress = ingress_yaml(
        "secure",
        "secure.test",
        "web",
        &[("portcullis.dev/allow_public_unauthenticated_access", "true")],
    );
    ingress.push_str("  tls:\n  - hosts: [secure.test]\n    secretName: secure-tls\n");
    env.must_apply(&ingress);

    let trusting = |ca: &TestCa| {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], env.port));
        reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(
                reqwest::Certificate::from_pem(ca.pem().as_bytes()).expect("ca pem"),
            )
            .resolve("secure.test", addr)
            .timeout(Duration::from_secs(5))
            .build()
            .expect("client")
    };
    let url = format!("https://secure.test:{}/", env.port);
    let served_by = |client: reqwest::Client| {
        let url = url.clone();
        async move {
            match client.get(&url).send().await {
                Ok(r) => r.status().as_u16(),
                Err(_) => 0,
            }
        }
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while served_by(trusting(&ca1)).await != 200 {
        assert!(
            Instant::now() < deadline,
            "certificate 1 never served:\n{}",
            env.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        served_by(trusting(&ca2)).await,
        0,
        "CA 2 does not trust certificate 1"
    );

    // Rotate the Secret: the next handshakes get the new certificate.
    let (cert2, key2) = ca2.issue(&["secure.test"]);
    env.must_apply(&tls_secret_yaml("secure-tls", &cert2, &key2));
    let deadline = Instant::now() + Duration::from_secs(20);
    while served_by(trusting(&ca2)).await != 200 {
        assert!(
            Instant::now() < deadline,
            "certificate 2 never served:\n{}",
            env.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(served_by(trusting(&ca1)).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_survive_an_api_server_restart() {
    let _exclusive = APISERVER.write().await;
    let env = Env::start("restart", true, &[]).await;
    let ip = env.cluster.host_ip.clone();
    let a = Upstream::start_on(&ip, "a").await;
    let public = ("portcullis.dev/allow_public_unauthenticated_access", "true");
    env.must_apply(&service_yaml("web"));
    env.must_apply(&slice_yaml("web", a.addr.port(), &[(&ip, true)]));
    env.must_apply(&ingress_yaml("before", "before.test", "web", &[public]));
    env.until("before.test", "/", "served before the restart", |s, _| {
        s == 200
    })
    .await;

    let restart = tokio::task::spawn_blocking(|| script("restart-apiserver", &[]));
    // While the API server is down and coming back, the last table keeps serving.
    while !restart.is_finished() {
        assert_eq!(env.get("before.test", "/").await.0, 200);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    restart.await.expect("restart task");

    // Changes made after the restart arrive (the watches resumed).
    env.must_apply(&ingress_yaml("after", "after.test", "web", &[public]));
    env.until("after.test", "/", "a change after the restart", |s, _| {
        s == 200
    })
    .await;
    assert_eq!(env.get("before.test", "/").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_writes_status_and_a_standby_takes_over() {
    let _shared = APISERVER.read().await;
    let lease = ["--lease-seconds", "3"];
    let mut env = Env::start(
        "leader",
        true,
        &[&lease[..], &["--publish-address", "203.0.113.1"]].concat(),
    )
    .await;
    env.must_apply(&service_yaml("web"));
    env.must_apply(&ingress_yaml("ing", "leader.test", "web", &[]));
    let status = [
        "get",
        "ingress",
        "ing",
        "-o",
        "jsonpath={.status.loadBalancer.ingress[0].ip}",
    ];
    env.until_kubectl(&status, "the leader writes status", |o| o == "203.0.113.1")
        .await;

    // A second replica with another address serves too, but does not write.
    let (mut standby, _) = env
        .ready_replica(
            "standby",
            &[&lease[..], &["--publish-address", "203.0.113.2"]].concat(),
        )
        .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(env.k(&status).unwrap_or_default(), "203.0.113.1");
    let holder = env
        .k(&[
            "get",
            "lease",
            "portcullis-portcullis",
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ])
        .expect("lease");
    assert!(!holder.is_empty());

    // The leader goes away without a goodbye: the standby takes the Lease over once it expires
    // and writes its address.
    env.stop();
    env.until_kubectl(&status, "the standby takes over", |o| o == "203.0.113.2")
        .await;
    let new_holder = env
        .k(&[
            "get",
            "lease",
            "portcullis-portcullis",
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ])
        .expect("lease");
    assert_ne!(holder, new_holder);
    let _ = standby.kill();
    let _ = standby.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_comes_from_the_publish_service() {
    let _shared = APISERVER.read().await;
    // The namespace name is only known after start: publish a Service in the default
    // namespace made for this test.
    let svc = format!("portcullis-lb-{:06x}", rand::random::<u32>() & 0xffffff);
    let cluster = cluster();
    cluster
        .kubectl_in(
            &["-n", "default", "apply", "-f", "-"],
            Some(&format!(
                "apiVersion: v1
kind: Service
metadata: {{name: {svc}}}
spec:
  type: LoadBalancer
  ports: [{{port: 443}}]
"
            )),
        )
        .expect("publish service");
    let cluster_ip = cluster
        .kubectl(&[
            "-n",
            "default",
            "get",
            "service",
            &svc,
            "-o",
            "jsonpath={.spec.clusterIP}",
        ])
        .expect("cluster IP");
    let env = Env::start(
        "publish",
        true,
        &["--publish-service", &format!("default/{svc}")],
    )
    .await;
    env.must_apply(&service_yaml("web"));
    env.must_apply(&ingress_yaml("ing", "publish.test", "web", &[]));
    let status = [
        "get",
        "ingress",
        "ing",
        "-o",
        "jsonpath={.status.loadBalancer.ingress[0].ip}",
    ];
    env.until_kubectl(&status, "status from the Service's cluster IP", |o| {
        o == cluster_ip
    })
    .await;
    // A load balancer address, once the Service has one, wins.
    cluster
        .kubectl(&[
            "-n",
            "default",
            "patch",
            "service",
            &svc,
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"loadBalancer":{"ingress":[{"ip":"198.51.100.9"}]}}}"#,
        ])
        .expect("service status");
    // The controller reads the Service on its next pass: poke it with a change.
    env.must_apply(&ingress_yaml("ing2", "publish2.test", "web", &[]));
    env.until_kubectl(&status, "status from the load balancer", |o| {
        o == "198.51.100.9"
    })
    .await;
    let _ = cluster.kubectl(&["-n", "default", "delete", "service", &svc, "--wait=false"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_stops_hands_the_lease_over() {
    let _shared = APISERVER.read().await;
    // A Lease long enough that a take-over within the wait below needs the release.
    let lease = ["--lease-seconds", "60"];
    let mut env = Env::start(
        "release",
        true,
        &[&lease[..], &["--publish-address", "203.0.113.1"]].concat(),
    )
    .await;
    env.must_apply(&service_yaml("web"));
    env.must_apply(&ingress_yaml("ing", "release.test", "web", &[]));
    let status = [
        "get",
        "ingress",
        "ing",
        "-o",
        "jsonpath={.status.loadBalancer.ingress[0].ip}",
    ];
    env.until_kubectl(&status, "the leader writes status", |o| o == "203.0.113.1")
        .await;
    let args: Vec<String> = ["--lease-seconds", "5", "--publish-address", "203.0.113.2"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut standby = env.replica("standby", free_port(), free_port(), &args);
    tokio::time::sleep(Duration::from_secs(2)).await;
    env.terminate();
    // Logs are written by a background thread: give the last lines a moment.
    let mut logs = env.logs();
    for _ in 0..50 {
        if logs.contains("released the Lease") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        logs = env.logs();
    }
    assert!(
        logs.contains("released the Lease"),
        "no release logged:\n{logs}"
    );
    env.until_kubectl(&status, "the standby takes over", |o| o == "203.0.113.2")
        .await;
    let _ = standby.kill();
    let _ = standby.wait();
}

/// The attack: with a host-less Ingress (a catch-all), any `Host` reaches a protected route.
/// An attacker asks for `evil.example`, gets a signed sign-in link that returns there, and
/// sends it to a victim; the victim's single sign-on would hand the session to
/// `evil.example/.pomerium/callback/`, where the attacker reads it. Sign-in must only ever
/// return to hosts an Ingress names, and a route cookie must open only on its own host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_theft_through_a_catch_all_route_is_refused() {
    let _shared = APISERVER.read().await;
    let port = free_port();
    let idp = Idp::start(&idp_config(&format!("http://authenticate.test:{port}")));
    let sign_in = format!(
        "authenticate_service_url: http://authenticate.test:{port}
idp_provider: auth0
idp_provider_url: {}
idp_client_id: portcullis-test
idp_client_secret: test-secret
",
        idp.issuer
    );
    let env = Env::start_on("catchall", true, &[], port, &sign_in).await;
    let ip = env.cluster.host_ip.clone();
    let up = Upstream::start_on(&ip, "app").await;
    env.must_apply(&service_yaml("app"));
    env.must_apply(&slice_yaml("app", up.addr.port(), &[(&ip, true)]));
    let alice_only = [(
        "ingress.pomerium.io/policy",
        "allow: {and: [{email: {is: alice@example.com}}]}",
    )];
    env.must_apply(&ingress_yaml("named", "app.test", "app", &alice_only));
    env.must_apply(&ingress_yaml("catch-all", "", "app", &alice_only));
    let hosts = ["app.test", "authenticate.test", "evil.example"];
    let victim = Browser::new(port, &hosts);
    let url = |host: &str, path: &str| format!("http://{host}:{port}{path}");
    let mut served = None;
    for _ in 0..100 {
        let page = victim.visit_as(&url("app.test", "/"), "auth0|alice").await;
        if page.status == 200 {
            served = Some(page);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let served = served.unwrap_or_else(|| panic!("app.test never served:\n{}", env.logs()));
    assert_eq!(upstream_of(&served.body), "app");

    // The attacker's request for an unnamed host reaches the catch-all and is sent to sign in…
    // (The catch-all may be published a pass after the named Ingress: until then evil.example
    // is a 404.)
    let attacker = Browser::new(port, &hosts);
    let mut resp = attacker.get_once(&url("evil.example", "/steal")).await;
    for _ in 0..100 {
        if resp.status() != 404 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        resp = attacker.get_once(&url("evil.example", "/steal")).await;
    }
    assert_eq!(resp.status(), 302, "{}", env.logs());
    let link = resp.headers()["location"]
        .to_str()
        .expect("location")
        .to_string();
    // …but the authenticate service refuses to return there, so the victim's session is
    // never handed to evil.example.
    let page = victim.get(&link).await;
    assert_eq!(page.status, 400, "{:#?}", page.hops);
    assert!(
        page.body.contains("is not one of this proxy"),
        "{}",
        page.body
    );
    assert!(
        page.hops
            .iter()
            .all(|h| !h.url.contains("evil.example") || !h.url.contains("/.pomerium/callback")),
        "{:#?}",
        page.hops
    );
    // And the victim's route cookie for app.test is no session on any other host.
    let cookie = victim.cookies(&url("app.test", "/"));
    let replay = attacker
        .client
        .get(url("evil.example", "/steal"))
        .header("cookie", cookie)
        .send()
        .await
        .expect("replay");
    assert_eq!(
        replay.status(),
        401,
        "the stolen cookie must not be a session there (401: sign in first)"
    );
}

/// Ingresses written the way Pomerium's documentation writes them (annotation values as YAML
/// or JSON text, PPL as a list, cosmetic keys beside real ones) are served as Pomerium would
/// serve them; one that needs an option Portcullis lacks and that decides who gets in is
/// refused with a Warning naming it, and nothing else is affected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pomerium_ingresses_migrate_unchanged() {
    let _shared = APISERVER.read().await;
    let env = Env::start("migrate", true, &[]).await;
    let ip = env.cluster.host_ip.clone();
    let a = Upstream::start_on(&ip, "a").await;
    env.must_apply(&service_yaml("web"));
    env.must_apply(&slice_yaml("web", a.addr.port(), &[(&ip, true)]));
    let p = "ingress.pomerium.io";
    let public = (
        "ingress.pomerium.io/allow_public_unauthenticated_access",
        "true",
    );
    let cases: Vec<(&str, Vec<(String, &str)>)> = vec![
        ("public", vec![]),
        (
            "headers",
            vec![
                (format!("{p}/set_request_headers"), "X-Team: platform"),
                (format!("{p}/remove_request_headers"), "[\"X-Drop\"]"),
                (
                    format!("{p}/set_response_headers"),
                    "{\"X-Frame-Options\": \"DENY\"}",
                ),
            ],
        ),
        ("host", vec![(format!("{p}/preserve_host_header"), "true")]),
        ("rewrite", vec![(format!("{p}/prefix_rewrite"), "/v2/")]),
        (
            "timeouts",
            vec![
                (format!("{p}/timeout"), "30s"),
                (format!("{p}/idle_timeout"), "5m"),
                (format!("{p}/allow_websockets"), "true"),
            ],
        ),
        (
            "portal",
            vec![
                (format!("{p}/name"), "Grafana"),
                (format!("{p}/description"), "Dashboards"),
                (format!("{p}/logo_url"), "https://example.com/grafana.svg"),
                (format!("{p}/depends_on"), "[\"grafana-auth.example.com\"]"),
            ],
        ),
        (
            "secrets",
            vec![
                (format!("{p}/set_request_headers_secret"), "api-headers"),
                (format!("{p}/set_response_headers_secret"), "api-headers"),
            ],
        ),
        (
            "tuning",
            vec![
                (format!("{p}/load_balancing_policy"), "LEAST_REQUEST"),
                (
                    format!("{p}/circuit_breaker_thresholds"),
                    "{max_connections: 100}",
                ),
                (format!("{p}/tls_upstream_server_name"), "web.internal"),
                (format!("{p}/pass_identity_headers"), "true"),
            ],
        ),
    ];
    env.must_apply(
        "apiVersion: v1
kind: Secret
metadata: {name: api-headers}
type: Opaque
stringData: {X-Api-Key: from-a-secret}
",
    );
    let mut hosts = Vec::new();
    for (name, extra) in &cases {
        let mut ann: Vec<(&str, &str)> = vec![public];
        ann.extend(extra.iter().map(|(k, v)| (k.as_str(), *v)));
        let host = format!("{name}.migrate.test");
        env.must_apply(&ingress_yaml(name, &host, "web", &ann));
        hosts.push(host);
    }
    // Rules that need a signed-in user: PPL as a YAML list, and the older keys.
    env.must_apply(&ingress_yaml(
        "ppl",
        "ppl.migrate.test",
        "web",
        &[(
            "ingress.pomerium.io/policy",
            "- allow:\n      and:\n        - email:\n            is: alice@example.com",
        )],
    ));
    env.must_apply(&ingress_yaml(
        "domains",
        "domains.migrate.test",
        "web",
        &[
            ("ingress.pomerium.io/allowed_domains", "[\"example.com\"]"),
            ("ingress.pomerium.io/allowed_users", "[\"bob@example.org\"]"),
        ],
    ));
    env.must_apply(&ingress_yaml(
        "anyone",
        "anyone.migrate.test",
        "web",
        &[("ingress.pomerium.io/allow_any_authenticated_user", "true")],
    ));
    env.must_apply(&ingress_yaml(
        "cors",
        "cors.migrate.test",
        "web",
        &[
            (
                "ingress.pomerium.io/allowed_users",
                "[\"alice@example.com\"]",
            ),
            ("ingress.pomerium.io/cors_allow_preflight", "true"),
        ],
    ));
    // A per-route identity provider decides who gets in and is not implemented: refused,
    // never ignored.
    env.must_apply(&ingress_yaml(
        "idp",
        "idp.migrate.test",
        "web",
        &[
            public,
            ("ingress.pomerium.io/identity_provider_secret", "client-ca"),
        ],
    ));

    for host in &hosts {
        env.until(host, "/app", "a Pomerium Ingress serves", |s, b| {
            s == 200 && upstream_of(b) == "a"
        })
        .await;
    }
    let echo = |body: &str| serde_json::from_str::<serde_json::Value>(body).unwrap_or_default();
    let (_, body) = env.get("rewrite.migrate.test", "/app").await;
    assert_eq!(echo(&body)["path"], "/v2/app", "prefix_rewrite: {body}");
    let (_, body) = env.get("host.migrate.test", "/").await;
    assert_eq!(
        echo(&body)["headers"]["host"],
        format!("host.migrate.test:{}", env.port),
        "preserve_host_header: {body}"
    );
    let client = env.client(&["headers.migrate.test"]);
    let r = client
        .get(format!("http://headers.migrate.test:{}/", env.port))
        .header("X-Drop", "secret")
        .send()
        .await
        .expect("request");
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    let body = echo(&r.text().await.unwrap_or_default());
    assert_eq!(body["headers"]["x-team"], "platform", "{body}");
    assert!(body["headers"].get("x-drop").is_none(), "{body}");

    let r = env
        .client(&["secrets.migrate.test"])
        .get(format!("http://secrets.migrate.test:{}/", env.port))
        .send()
        .await
        .expect("request");
    assert_eq!(r.headers()["x-api-key"], "from-a-secret");
    let body = echo(&r.text().await.unwrap_or_default());
    assert_eq!(body["headers"]["x-api-key"], "from-a-secret", "{body}");
    // The Secret changes: the route follows, as for TLS Secrets.
    env.must_apply(
        "apiVersion: v1
kind: Secret
metadata: {name: api-headers}
type: Opaque
stringData: {X-Api-Key: rotated}
",
    );
    env.until(
        "secrets.migrate.test",
        "/",
        "a rotated Secret is used",
        |_, b| echo(b)["headers"]["x-api-key"] == "rotated",
    )
    .await;
    assert!(
        !env.logs().contains("from-a-secret") && !env.logs().contains("rotated\""),
        "Secret values never reach the log"
    );

    for host in [
        "ppl.migrate.test",
        "domains.migrate.test",
        "anyone.migrate.test",
        "cors.migrate.test",
    ] {
        env.until(
            host,
            "/",
            "a rule that needs a user asks for one",
            |s, _| s == 401,
        )
        .await;
    }
    // A CORS preflight passes without a user; the request it announces does not.
    let preflight = env
        .client(&["cors.migrate.test"])
        .request(
            reqwest::Method::OPTIONS,
            format!("http://cors.migrate.test:{}/api", env.port),
        )
        .header("Origin", "https://app.example.com")
        .header("Access-Control-Request-Method", "PUT")
        .send()
        .await
        .expect("preflight");
    assert_eq!(preflight.status(), 200);
    assert_eq!(
        upstream_of(&preflight.text().await.unwrap_or_default()),
        "a"
    );
    env.until_event(
        "Warning",
        "UnsupportedAnnotation",
        "ingress.pomerium.io/identity_provider_secret",
    )
    .await;
    assert_eq!(env.get("idp.migrate.test", "/").await.0, 404);
    env.until_event(
        "Normal",
        "IgnoredAnnotation",
        "ingress.pomerium.io/depends_on",
    )
    .await;
    env.until_event(
        "Normal",
        "IgnoredAnnotation",
        "ingress.pomerium.io/circuit_breaker_thresholds",
    )
    .await;
    // Every Ingress but the refused one is reported served.
    let served = env
        .until_kubectl(
            &[
                "get",
                "events.events.k8s.io",
                "-o",
                "jsonpath={range .items[?(@.reason==\"Served\")]}{.regarding.name}{\"\\n\"}{end}",
            ],
            "Served Events",
            |out| out.lines().count() >= cases.len() + 4,
        )
        .await;
    assert!(!served.lines().any(|l| l == "idp"), "{served}");
}
