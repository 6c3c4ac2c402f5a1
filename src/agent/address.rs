//! The link-local addresses the agent answers on (`169.254.170.23/32`, and `fd00:ec2::23/128`
//! where the node has IPv6), added to an interface of the node at start and removed at exit,
//! over rtnetlink (the agent's image has no `ip` command). Needs `CAP_NET_ADMIN`.

use std::net::IpAddr;

use futures::TryStreamExt;

#[derive(Debug, thiserror::Error)]
pub enum AddressError {
    #[error("cannot open a netlink socket: {0}")]
    Netlink(#[source] std::io::Error),
    #[error("no network interface {0:?} on this node")]
    NoInterface(String),
    #[error("adding {address} to {interface}: {reason} (the agent needs CAP_NET_ADMIN)")]
    Add {
        address: IpAddr,
        interface: String,
        reason: String,
    },
    #[error("reading the interfaces: {0}")]
    Read(String),
}

impl AddressError {
    pub fn category(&self) -> &'static str {
        match self {
            AddressError::Netlink(_) | AddressError::Read(_) => "Netlink",
            AddressError::NoInterface(_) => "NoInterface",
            AddressError::Add { .. } => "AddAddress",
        }
    }
}

/// The prefix length of a single-address route: /32 or /128.
pub fn host_prefix(address: IpAddr) -> u8 {
    match address {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// Whether the agent must add `address` to the node itself: loopback and unspecified addresses
/// exist already.
pub fn must_add(address: IpAddr) -> bool {
    !address.is_loopback() && !address.is_unspecified()
}

/// Addresses this agent added, to remove at exit.
pub struct Added {
    handle: rtnetlink::Handle,
    index: u32,
    pub addresses: Vec<IpAddr>,
}

/// Adds each of `addresses` to `interface` (an address already there is kept: a crashed agent
/// leaves it behind, and the next one takes it over). An IPv6 address that cannot be added
/// (no IPv6 on the node) is skipped with a warning; IPv4 failures are errors.
pub async fn add(interface: &str, addresses: &[IpAddr]) -> Result<Added, AddressError> {
    let (connection, handle, _) = rtnetlink::new_connection().map_err(AddressError::Netlink)?;
    tokio::spawn(connection);
    let link = handle
        .link()
        .get()
        .match_name(interface.to_string())
        .execute()
        .try_next()
        .await
        .map_err(|_| AddressError::NoInterface(interface.to_string()))?
        .ok_or_else(|| AddressError::NoInterface(interface.to_string()))?;
    let index = link.header.index;
    let mut added = Vec::new();
    for &address in addresses {
        match handle
            .address()
            .add(index, address, host_prefix(address))
            .replace()
            .execute()
            .await
        {
            Ok(()) => {
                tracing::info!(%address, interface, "link-local address added");
                added.push(address);
            }
            Err(e) if address.is_ipv6() => {
                tracing::warn!(%address, interface, error = %e, "no IPv6 endpoint on this node");
            }
            Err(e) => {
                return Err(AddressError::Add {
                    address,
                    interface: interface.to_string(),
                    reason: e.to_string(),
                });
            }
        }
    }
    Ok(Added {
        handle,
        index,
        addresses: added,
    })
}

impl Added {
    /// Removes the addresses again (at exit). Failures are logged: the pod is going anyway.
    pub async fn remove(self) {
        for address in &self.addresses {
            let found: Result<Vec<_>, _> = self
                .handle
                .address()
                .get()
                .set_link_index_filter(self.index)
                .set_address_filter(*address)
                .execute()
                .try_collect()
                .await;
            match found {
                Ok(messages) => {
                    for message in messages {
                        if let Err(e) = self.handle.address().del(message).execute().await {
                            tracing::warn!(%address, error = %e, "could not remove the address");
                        }
                    }
                    tracing::info!(%address, "link-local address removed");
                }
                Err(e) => tracing::warn!(%address, error = %e, "could not read the address"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_addresses_are_added_unless_the_node_has_them_anyway() {
        let v4: IpAddr = "169.254.170.23".parse().expect("ip");
        let v6: IpAddr = "fd00:ec2::23".parse().expect("ip");
        assert_eq!(host_prefix(v4), 32);
        assert_eq!(host_prefix(v6), 128);
        assert!(must_add(v4) && must_add(v6));
        assert!(!must_add("127.0.0.1".parse().expect("ip")));
        assert!(!must_add("::".parse().expect("ip")));
    }
}
