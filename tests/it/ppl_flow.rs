//! Pomerium policy-language routes through real nginx: a route written as a
//! Pomerium user writes it decides as Pomerium documents (sign-in for a
//! criterion about the user, `deny` over `allow`, request-only policies
//! answered without a sign-in), and nginx's 403 page says what was unmet.

use authgate::config::RouteConfig;
use authgate::policy::ppl::Tree;
use serde_json::json;
use url::Url;

use crate::fixture::header;
use crate::nginx_flow::{Site, site_with};
use crate::support::nginx::{BROWSER_JSON_ACCEPT, Nginx};

/// On `hello`: under `/open`, `/open/public/` for everyone and nothing else
/// for anyone; the rest, group devops may read and nobody may DELETE.
fn routes(nginx: &Nginx) -> Vec<RouteConfig> {
    let route = |index, name: &str, prefix: Option<&str>, policy| RouteConfig {
        index,
        from: Url::parse(&nginx.url("hello", "")).expect("route from"),
        prefix: prefix.map(str::to_owned),
        name: Some(name.to_owned()),
        policy: Some(Tree::from_json(&policy)),
        ..RouteConfig::default()
    };
    vec![
        route(
            0,
            "notices",
            Some("/open"),
            json!({"allow": {"and": [{"http_path": {"starts_with": "/open/public/"}}]}}),
        ),
        route(
            1,
            "hello app",
            None,
            json!({
                "allow": {"or": [{"groups": {"has": "devops"}}]},
                "deny": {"or": [{"http_method": {"is": "DELETE"}}]},
            }),
        ),
    ]
}

async fn send(site: &Site, method: &str, url: &str, cookie: Option<&str>) -> (u16, String) {
    let mut request = site
        .client
        .request(method.parse().expect("method"), url)
        .header("Accept", BROWSER_JSON_ACCEPT);
    if let Some(cookie) = cookie {
        request = request.header("Cookie", cookie);
    }
    let response = request.send().await.expect("request through nginx");
    let status = response.status().as_u16();
    let location = (status == 302).then(|| header(&response, "location"));
    let body = response.text().await.expect("body");
    (status, location.unwrap_or(body))
}

#[tokio::test]
async fn pomerium_policies_through_nginx() {
    let site = site_with(routes).await;
    let hello = site.nginx.url("hello", "/reports");

    // A criterion about the user, nobody signed in: sign in.
    let (status, location) = send(&site, "GET", &hello, None).await;
    assert_eq!(status, 302, "{location}");
    assert!(location.contains("/oauth2/start?rd="), "{location}");

    // A member of devops reads; `deny` wins over `allow` for DELETE.
    let alice = site.login(&hello, "alice@example.com").await;
    assert_eq!(send(&site, "GET", &hello, Some(&alice)).await.0, 200);
    let (status, page) = send(&site, "DELETE", &hello, Some(&alice)).await;
    assert_eq!(status, 403, "{page}");
    assert!(page.contains("refuses method DELETE"), "{page}");
    assert!(page.contains("hello app"), "the route's name: {page}");

    // Someone outside devops is told what is missing.
    let bob = site.login(&hello, "bob@example.com").await;
    let (status, page) = send(&site, "GET", &hello, Some(&bob)).await;
    assert_eq!(status, 403, "{page}");
    assert!(
        page.contains("needs group devops; you are in: users"),
        "{page}"
    );

    // A policy on the request alone answers without a sign-in.
    let public = site.nginx.url("hello", "/open/public/notice.txt");
    assert_eq!(send(&site, "GET", &public, None).await.0, 200);
    let private = site.nginx.url("hello", "/open/private");
    let (status, page) = send(&site, "GET", &private, None).await;
    assert_eq!(status, 403, "refused, not sent to sign in: {page}");
}
