use clap::Parser;
use holdfast_handler::publisher::{item, publish, Args};
use std::io::Read;

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let content = match &args.content {
        Some(content) => content.clone(),
        None if args.hint || args.close => String::new(),
        None => {
            let mut text = String::new();
            if let Err(err) = std::io::stdin().read_to_string(&mut text) {
                eprintln!("holdfast-publish: cannot read standard input: {err}");
                std::process::exit(2);
            }
            text
        }
    };
    let result = match item(&args, &content) {
        Ok(item) => publish(&args.spec, &item).await,
        Err(err) => Err(err),
    };
    match result {
        Ok(()) => println!("Published"),
        Err(err) => {
            eprintln!("holdfast-publish: {err}");
            std::process::exit(1);
        }
    }
}
