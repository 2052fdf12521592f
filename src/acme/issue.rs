//! One issuance: a new order, every pending authorization answered (HTTP-01 tokens published, or
//! DNS-01 TXT records published and seen on the authoritative servers) before the CA is told,
//! then finalize and download the chain. Tokens and TXT records are removed afterwards, always.

use std::sync::Arc;
use std::time::Duration;

use instant_acme::{
    Account, AuthorizationStatus, CertificateIdentifier, ChallengeType, Identifier, NewOrder,
    OrderStatus, RetryPolicy,
};

use super::dns01::{DnsSolver, TxtRecord};
use super::error::ValidationFailure;
use super::http01::ChallengeTokens;
use super::storage::{parse_issued, Issued};
use super::{AcmeError, CaStep};
use crate::cluster::Cluster;

/// How long the CA gets to validate every authorization.
pub const DEFAULT_VALIDATION_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the CA gets to sign after finalize.
pub const DEFAULT_SIGNING_TIMEOUT: Duration = Duration::from_secs(60);

/// How authorizations are answered.
#[derive(Clone)]
pub enum Solver {
    Http01(Arc<ChallengeTokens>),
    Dns01(Arc<DnsSolver>),
}

impl Solver {
    fn challenge_type(&self) -> ChallengeType {
        match self {
            Self::Http01(_) => ChallengeType::Http01,
            Self::Dns01(_) => ChallengeType::Dns01,
        }
    }
}

/// Withdraws published HTTP-01 tokens when dropped (also when the task is aborted).
struct TokenGuard {
    tokens: Arc<ChallengeTokens>,
    published: Vec<String>,
}

impl Drop for TokenGuard {
    fn drop(&mut self) {
        for token in &self.published {
            self.tokens.withdraw(token);
        }
    }
}

/// What an issuance produced: the certificate and its PEM key (for storage).
pub struct Outcome {
    pub issued: Issued,
    pub key_pem: String,
}

/// Orders a certificate for `domains` and returns it once issued.
pub async fn issue(
    account: &Account,
    directory: &str,
    domains: &[String],
    solver: &Solver,
    replaces: Option<CertificateIdentifier<'static>>,
    cluster: Option<&Arc<Cluster>>,
) -> Result<Outcome, AcmeError> {
    let identifiers: Vec<Identifier> = domains.iter().map(|d| Identifier::Dns(d.clone())).collect();
    let mut new_order = NewOrder::new(&identifiers);
    if let Some(replaces) = replaces {
        new_order = new_order.replaces(replaces);
    }
    let mut order = account
        .new_order(&new_order)
        .await
        .map_err(|e| AcmeError::from_ca(CaStep::NewOrder, e))?;

    // Pass 1: what each pending authorization asks for.
    let kind = solver.challenge_type();
    let mut pending = 0usize;
    let mut tokens = TokenGuard {
        tokens: match solver {
            Solver::Http01(tokens) => tokens.clone(),
            Solver::Dns01(_) => Arc::new(ChallengeTokens::default()),
        },
        published: Vec::new(),
    };
    let mut records: Vec<TxtRecord> = Vec::new();
    let mut shared_tokens: Vec<(String, String)> = Vec::new();
    {
        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let mut authorization =
                authorization.map_err(|e| AcmeError::from_ca(CaStep::Authorization, e))?;
            match authorization.status {
                AuthorizationStatus::Valid => continue,
                AuthorizationStatus::Pending => {}
                status => {
                    return Err(AcmeError::Authorization {
                        identifier: authorization.identifier().to_string(),
                        status,
                    })
                }
            }
            let identifier = authorization.identifier().to_string();
            let challenge =
                authorization
                    .challenge(kind.clone())
                    .ok_or_else(|| AcmeError::NoChallenge {
                        kind: kind.clone(),
                        identifier: identifier.clone(),
                    })?;
            let key_authorization = challenge.key_authorization();
            match solver {
                Solver::Http01(tokens_table) => {
                    tokens_table.publish(&challenge.token, key_authorization.as_str());
                    tokens.published.push(challenge.token.clone());
                    shared_tokens.push((
                        challenge.token.clone(),
                        key_authorization.as_str().to_string(),
                    ));
                }
                Solver::Dns01(_) => records.push(TxtRecord::for_identifier(
                    &identifier,
                    key_authorization.dns_value(),
                )),
            }
            pending += 1;
        }
    }

    // DNS-01: every record published and visible before the CA is told.
    let dns_solver = match solver {
        Solver::Dns01(dns) if !records.is_empty() => Some(dns.clone()),
        _ => None,
    };
    let published = match &dns_solver {
        Some(dns) => match dns.publish(&records).await {
            Ok(published) => Some(published),
            Err((published, error)) => {
                dns.cleanup(&published).await;
                return Err(error.into());
            }
        },
        None => None,
    };
    // HTTP-01 with a cluster: the CA may reach any instance, so every one must know the tokens.
    let cluster = cluster.filter(|_| !shared_tokens.is_empty());
    if let Some(cluster) = &cluster {
        for (token, key_authorization) in &shared_tokens {
            if let Err(error) = cluster.publish_token(token, key_authorization).await {
                for (token, _) in &shared_tokens {
                    cluster.withdraw_token(token).await;
                }
                return Err(AcmeError::Cluster {
                    context: "cannot publish the HTTP-01 token in Redis",
                    source: error,
                });
            }
        }
    }
    let result = validate_and_finalize(&mut order, pending, kind).await;
    if let Some(cluster) = &cluster {
        for (token, _) in &shared_tokens {
            cluster.withdraw_token(token).await;
        }
    }
    if let (Some(dns), Some(published)) = (&dns_solver, &published) {
        dns.cleanup(published).await;
    }
    drop(tokens);
    let (chain, key_pem) = result?;
    let issued = parse_issued(&chain, &key_pem, directory)?;
    Ok(Outcome { issued, key_pem })
}

/// Pass 2: tells the CA each challenge is ready, waits for the order, finalizes, downloads.
async fn validate_and_finalize(
    order: &mut instant_acme::Order,
    pending: usize,
    kind: ChallengeType,
) -> Result<(String, String), AcmeError> {
    if pending > 0 {
        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let mut authorization =
                authorization.map_err(|e| AcmeError::from_ca(CaStep::Authorization, e))?;
            if authorization.status != AuthorizationStatus::Pending {
                continue;
            }
            let identifier = authorization.identifier().to_string();
            let mut challenge =
                authorization
                    .challenge(kind.clone())
                    .ok_or_else(|| AcmeError::NoChallenge {
                        kind: kind.clone(),
                        identifier: identifier.clone(),
                    })?;
            challenge
                .set_ready()
                .await
                .map_err(|e| AcmeError::from_ca(CaStep::Challenge(identifier), e))?;
        }
    }
    let retries = RetryPolicy::new()
        .initial_delay(Duration::from_millis(250))
        .backoff(1.5)
        .timeout(DEFAULT_VALIDATION_TIMEOUT);
    let status = order
        .poll_ready(&retries)
        .await
        .map_err(|e| AcmeError::from_ca(CaStep::Validation, e))?;
    if status != OrderStatus::Ready {
        return Err(AcmeError::Validation {
            status,
            failures: failures(order).await,
        });
    }
    let key_pem = order
        .finalize()
        .await
        .map_err(|e| AcmeError::from_ca(CaStep::Finalize, e))?;
    let retries = RetryPolicy::new()
        .initial_delay(Duration::from_millis(250))
        .backoff(1.5)
        .timeout(DEFAULT_SIGNING_TIMEOUT);
    let chain = order
        .poll_certificate(&retries)
        .await
        .map_err(|e| AcmeError::from_ca(CaStep::Download, e))?;
    Ok((chain, key_pem))
}

/// The CA's reasons for a failed order: the order's own problem, then one per failed challenge.
async fn failures(order: &mut instant_acme::Order) -> Vec<ValidationFailure> {
    let mut reasons = Vec::new();
    if let Some(problem) = &order.state().error {
        reasons.push(ValidationFailure {
            identifier: None,
            problem: problem.clone(),
        });
    }
    let mut authorizations = order.authorizations();
    while let Some(Ok(authorization)) = authorizations.next().await {
        for challenge in &authorization.challenges {
            if let Some(problem) = &challenge.error {
                reasons.push(ValidationFailure {
                    identifier: Some(authorization.identifier().to_string()),
                    problem: problem.clone(),
                });
            }
        }
    }
    reasons
}
