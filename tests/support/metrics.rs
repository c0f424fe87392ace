//! Reading `/metrics` (Prometheus text) in tests.

/// The value of the first series whose line starts with `name` (a name, or a name with labels).
pub fn value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|line| line.starts_with(name))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

/// The series `name` of the node at `address`, asked with `client`; panics if it is missing.
pub async fn scrape(client: &reqwest::Client, address: &str, name: &str) -> f64 {
    let text = client
        .get(format!("{address}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    value(&text, name).unwrap_or_else(|| panic!("{name} missing from /metrics"))
}
