//! Stripe's form encoding: `application/x-www-form-urlencoded` bodies whose
//! keys carry nesting in brackets (`line_items[0][price_data][currency]=eur`,
//! `metadata[request_id]=...`, `payment_method_types[]=card`). [`parse`] turns
//! such a body into a [`Node`] tree; lists are maps with numeric keys.

use std::collections::BTreeMap;

/// One parameter value or a nested object / list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Value(String),
    Map(BTreeMap<String, Node>),
}

/// A parameter name whose shape contradicts another one (`a=1&a[b]=2`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Invalid parameter: {0}")]
pub struct FormError(pub String);

impl Node {
    pub fn as_map(&self) -> Option<&BTreeMap<String, Node>> {
        match self {
            Node::Map(m) => Some(m),
            Node::Value(_) => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Node::Value(v) => Some(v),
            Node::Map(_) => None,
        }
    }

    /// The child at `key`, if this is a map that has it.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map().and_then(|m| m.get(key))
    }

    /// List items in index order (keys that are numbers, sorted numerically).
    pub fn items(&self) -> Vec<(usize, &Node)> {
        let mut items: Vec<(usize, &Node)> = self
            .as_map()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| k.parse().ok().map(|i| (i, v)))
                    .collect()
            })
            .unwrap_or_default();
        items.sort_by_key(|(i, _)| *i);
        items
    }
}

/// Decoded `(key, value)` pairs of a form body, in body order.
///
/// # Errors
/// When the body is not valid form encoding.
pub fn pairs(body: &[u8]) -> Result<Vec<(String, String)>, FormError> {
    serde_urlencoded::from_bytes(body).map_err(|e| FormError(format!("malformed form body: {e}")))
}

/// Builds the parameter tree from decoded pairs.
///
/// # Errors
/// When one name is used both as a value and as an object.
pub fn parse(pairs: &[(String, String)]) -> Result<Node, FormError> {
    let mut root = Node::Map(BTreeMap::new());
    for (key, value) in pairs {
        let path = split_key(key).ok_or_else(|| FormError(key.clone()))?;
        insert(&mut root, &path, value.clone(), key)?;
    }
    Ok(root)
}

/// `a[b][0][]` -> `["a", "b", "0", ""]`.
fn split_key(key: &str) -> Option<Vec<&str>> {
    let (head, mut rest) = match key.find('[') {
        Some(i) => (&key[..i], &key[i..]),
        None => (key, ""),
    };
    if head.is_empty() {
        return None;
    }
    let mut path = vec![head];
    while !rest.is_empty() {
        let inner = rest.strip_prefix('[')?;
        let close = inner.find(']')?;
        path.push(&inner[..close]);
        rest = &inner[close + 1..];
    }
    Some(path)
}

fn insert(node: &mut Node, path: &[&str], value: String, full_key: &str) -> Result<(), FormError> {
    let Node::Map(map) = node else {
        return Err(FormError(full_key.to_owned()));
    };
    let (first, rest) = path.split_first().expect("non-empty path");
    // `[]` appends: the next free index.
    let key = if first.is_empty() {
        map.len().to_string()
    } else {
        (*first).to_owned()
    };
    if rest.is_empty() {
        if map.contains_key(&key) && matches!(map.get(&key), Some(Node::Map(_))) {
            return Err(FormError(full_key.to_owned()));
        }
        map.insert(key, Node::Value(value));
        return Ok(());
    }
    let child = map.entry(key).or_insert_with(|| Node::Map(BTreeMap::new()));
    insert(child, rest, value, full_key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_brackets_lists_and_appends() {
        let body = b"mode=payment&line_items%5B0%5D%5Bprice_data%5D%5Bcurrency%5D=eur\
&line_items[0][quantity]=1&metadata[request_id]=r1&payment_method_types[]=card&payment_method_types[]=link";
        let tree = parse(&pairs(body).unwrap()).unwrap();
        assert_eq!(tree.get("mode").and_then(Node::as_str), Some("payment"));
        let item = &tree.get("line_items").unwrap().items()[0].1;
        assert_eq!(
            item.get("price_data")
                .and_then(|p| p.get("currency"))
                .and_then(Node::as_str),
            Some("eur")
        );
        assert_eq!(
            tree.get("metadata")
                .and_then(|m| m.get("request_id"))
                .and_then(Node::as_str),
            Some("r1")
        );
        let pmt: Vec<_> = tree
            .get("payment_method_types")
            .unwrap()
            .items()
            .iter()
            .map(|(_, n)| n.as_str().unwrap())
            .collect();
        assert_eq!(pmt, ["card", "link"]);
    }

    #[test]
    fn contradicting_shapes_are_rejected() {
        let p = |s: &str| parse(&pairs(s.as_bytes()).unwrap());
        assert!(p("a=1&a[b]=2").is_err());
        assert!(p("a[b]=2&a=1").is_err());
        assert!(p("a[b=1").is_err());
    }
}
