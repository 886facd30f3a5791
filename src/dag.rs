//! `pipeline dag`: the instance graph as text, Graphviz dot or Mermaid.

use crate::config::Plan;

#[derive(Debug, Clone, Copy)]
pub enum DagFormat {
    Text,
    Dot,
    Mermaid,
}

pub fn render(plan: &Plan, format: DagFormat) -> String {
    let instances = &plan.instances;
    let mut out = String::new();
    match format {
        DagFormat::Text => {
            for instance in instances {
                let needs: Vec<&str> = instance.needs.iter().map(|&n| instances[n].name.as_str()).collect();
                if needs.is_empty() {
                    out.push_str(&format!("{}\n", instance.name));
                } else {
                    out.push_str(&format!("{} <- {}\n", instance.name, needs.join(", ")));
                }
            }
        }
        DagFormat::Dot => {
            out.push_str("digraph pipeline {\n  rankdir=LR;\n  node [shape=box];\n");
            for instance in instances {
                out.push_str(&format!("  {:?};\n", instance.name));
            }
            for instance in instances {
                for &n in &instance.needs {
                    out.push_str(&format!("  {:?} -> {:?};\n", instances[n].name, instance.name));
                }
            }
            out.push_str("}\n");
        }
        DagFormat::Mermaid => {
            out.push_str("flowchart LR\n");
            for (i, instance) in instances.iter().enumerate() {
                out.push_str(&format!("  n{i}[\"{}\"]\n", instance.name.replace('"', "'")));
            }
            for (i, instance) in instances.iter().enumerate() {
                for &n in &instance.needs {
                    out.push_str(&format!("  n{n} --> n{i}\n"));
                }
            }
        }
    }
    out
}
