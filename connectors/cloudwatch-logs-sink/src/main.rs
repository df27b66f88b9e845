//! `cloudwatch-logs-sink --config FILE [--secrets FILE]`: the CloudWatch Logs
//! sink connector, as `cdk deploy` starts it. Everything is in the falcon-lake library.

fn main() -> std::process::ExitCode {
    falcon_lake::connector::main(falcon_lake::connector::Kind::CloudWatchSink)
}
