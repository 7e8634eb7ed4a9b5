//! `kafka-operator crds` prints the CRDs; `kafka-operator run` runs the controllers.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, Subcommand};
use kafka_lease::LeaseConfig;
use kafka_operator::controller::{RunConfig, run};
use kafka_operator::gateway::resources::GatewayDefaults;

#[derive(Parser)]
#[command(name = "kafka-operator", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print every CRD as one multi-document YAML stream.
    Crds,
    /// Run the controllers.
    Run(RunArgs),
}

#[derive(clap::Args)]
struct RunArgs {
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "KAFKA_OPERATOR_HTTP", default_value = "0.0.0.0:8080")]
    http: SocketAddr,
    /// Most reconciles in flight per kind.
    #[arg(long, env = "KAFKA_OPERATOR_CONCURRENCY", default_value_t = 16)]
    concurrency: u16,
    /// Watch only this namespace (default: all).
    #[arg(long, env = "KAFKA_OPERATOR_WATCH_NAMESPACE")]
    watch_namespace: Option<String>,
    /// Run without leader election (only safe with a single replica).
    #[arg(long, env = "KAFKA_OPERATOR_NO_LEADER_ELECTION")]
    no_leader_election: bool,
    #[arg(
        long,
        env = "KAFKA_OPERATOR_LEASE_NAME",
        default_value = "kafka-operator"
    )]
    lease_name: String,
    /// Namespace of the Lease: the operator's own.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// This replica's identity in the Lease and in Events.
    #[arg(long, env = "POD_NAME", default_value = "kafka-operator")]
    identity: String,
    #[arg(long, env = "KAFKA_OPERATOR_LEASE_SECONDS", default_value_t = 15)]
    lease_seconds: u64,
    /// Image of KafkaGateways whose spec.image is unset (default: the gateway image of this
    /// operator's version, localhost/kafka-smq/kafka-gateway:VERSION, as images/build names it).
    #[arg(long, env = "KAFKA_OPERATOR_DEFAULT_GATEWAY_IMAGE", default_value_t = GatewayDefaults::builtin_image(),
        value_parser = clap::builder::NonEmptyStringValueParser::new())]
    default_gateway_image: String,
    /// Pull secret of gateway pods whose KafkaGateway sets no spec.imagePullSecrets (repeat for more;
    /// the Secret must exist in each KafkaGateway's namespace).
    #[arg(long = "gateway-image-pull-secret",
        value_parser = clap::builder::NonEmptyStringValueParser::new())]
    gateway_image_pull_secrets: Vec<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Crds => {
            print!("{}", kafka_crds::all_crds_yaml()?);
            Ok(())
        }
        Command::Run(a) => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| "info".into()),
                )
                .init();
            let lease = (!a.no_leader_election).then(|| LeaseConfig {
                name: a.lease_name,
                namespace: a.lease_namespace,
                identity: a.identity.clone(),
                duration: Duration::from_secs(a.lease_seconds),
                renew_every: Duration::from_secs(a.lease_seconds.div_ceil(3).max(1)),
            });
            run(RunConfig {
                http: a.http,
                concurrency: a.concurrency,
                namespace: a.watch_namespace,
                lease,
                identity: a.identity,
                gateway_defaults: GatewayDefaults {
                    image: a.default_gateway_image,
                    image_pull_secrets: a.gateway_image_pull_secrets,
                },
            })
            .await
        }
    }
}
