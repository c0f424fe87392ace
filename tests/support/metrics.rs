//! Reading `/metrics` (Prometheus text) in tests, shared by the test binaries.

/// The value of the first series whose line starts with `name` (a name, or a name with labels).
pub fn value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|line| line.starts_with(name))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}
