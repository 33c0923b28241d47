//! A model's gradients and parameters as one flat `f32` buffer, for the
//! collective: in the module's visiting order, which is the same on every
//! rank running the same config.

use burn::module::{AutodiffModule, Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Shape, Tensor, TensorData};

/// The gradients `grads` holds for `module`'s parameters, flattened, and
/// the layout to rebuild them with. The gradients are joined on their
/// device and read back in one transfer (a GPU would otherwise stop for
/// each of a ResNet-50's ~160 parameters).
pub fn flatten_gradients<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    grads: &mut GradientsParams,
) -> (Vec<f32>, GradientLayout) {
    let mut flatten = FlattenGradients::<B> {
        grads,
        parts: Vec::new(),
        layout: GradientLayout::default(),
    };
    module.visit(&mut flatten);
    let FlattenGradients { parts, layout, .. } = flatten;
    if parts.is_empty() {
        return (Vec::new(), layout);
    }
    let mut values = Vec::new();
    extend_with(&mut values, Tensor::cat(parts, 0).into_data());
    (values, layout)
}

/// Which parameters a flat gradient buffer holds, with their shapes.
#[derive(Clone, Debug, Default)]
pub struct GradientLayout {
    entries: Vec<(burn::module::ParamId, Vec<usize>)>,
}

impl GradientLayout {
    /// The gradients of `values` (laid out as `self`) on `device`: the
    /// buffer goes to the device in one transfer and is cut there.
    pub fn unflatten<B: Backend>(&self, values: &[f32], device: &B::Device) -> GradientsParams {
        let mut grads = GradientsParams::new();
        if values.is_empty() {
            return grads;
        }
        let flat =
            Tensor::<B, 1>::from_data(TensorData::new(values.to_vec(), [values.len()]), device);
        let mut start = 0;
        for (id, shape) in &self.entries {
            let len: usize = shape.iter().product();
            let part = flat.clone().narrow(0, start, len);
            match shape.len() {
                1 => grads.register(*id, part),
                2 => grads.register(*id, part.reshape::<2, _>(Shape::from(shape.clone()))),
                3 => grads.register(*id, part.reshape::<3, _>(Shape::from(shape.clone()))),
                4 => grads.register(*id, part.reshape::<4, _>(Shape::from(shape.clone()))),
                rank => unreachable!("no parameter of rank {rank} in these models"),
            }
            start += len;
        }
        grads
    }
}

struct FlattenGradients<'a, B: AutodiffBackend> {
    grads: &'a mut GradientsParams,
    /// Each gradient, flat, on its device.
    parts: Vec<Tensor<B::InnerBackend, 1>>,
    layout: GradientLayout,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for FlattenGradients<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(grad) = self.grads.remove::<B::InnerBackend, D>(param.id) {
            let dims = grad.dims().to_vec();
            let len = dims.iter().product::<usize>();
            self.layout.entries.push((param.id, dims));
            self.parts.push(grad.reshape([len]));
        }
    }
}

/// Appends `data`'s values as `f32`, in one copy when they are `f32`
/// already (gradients and master weights are).
fn extend_with(values: &mut Vec<f32>, data: TensorData) {
    match data.as_slice::<f32>() {
        Ok(slice) => values.extend_from_slice(slice),
        Err(_) => values.extend(data.convert::<f32>().iter::<f32>()),
    }
}

/// Every float tensor of `module` (parameters and running statistics),
/// flattened in visiting order.
pub fn flatten_parameters<B: Backend, M: Module<B>>(module: &M) -> Vec<f32> {
    struct Collect(Vec<f32>);
    impl<B: Backend> ModuleVisitor<B> for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            extend_with(&mut self.0, param.val().into_data());
        }
    }
    let mut collect = Collect(Vec::new());
    module.visit(&mut collect);
    collect.0
}

/// `module` with its float tensors replaced by `values` (laid out as
/// [`flatten_parameters`] writes them), each keeping whether it takes
/// gradients.
pub fn load_parameters<B: Backend, M: Module<B>>(module: M, values: &[f32]) -> M {
    struct Load<'a> {
        values: &'a [f32],
    }
    impl<B: Backend> ModuleMapper<B> for Load<'_> {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            let (id, old, mapper) = param.consume();
            let shape = old.shape();
            let len = shape.num_elements();
            let (head, rest) = self.values.split_at(len);
            self.values = rest;
            let fresh = Tensor::<B, D>::from_data(
                TensorData::new(head.to_vec(), shape).convert_dtype(old.dtype()),
                &old.device(),
            );
            let fresh = if old.is_require_grad() {
                fresh.require_grad()
            } else {
                fresh
            };
            Param::from_mapped_value(id, fresh, mapper)
        }
    }
    module.map(&mut Load { values })
}
