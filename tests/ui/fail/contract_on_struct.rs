use seawall::contract;

#[contract]
pub struct Crm {
    pub base_url: String,
}

fn main() {}
