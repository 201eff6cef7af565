use seawall::Classify;

#[derive(Debug, Classify)]
enum CrmError {
    #[classify(retryable)]
    RateLimited,
    Unclassified,
    #[classify(retryable, permanent)]
    Both,
    #[classify(delegate)]
    TwoFields(u16, String),
}

fn main() {}
