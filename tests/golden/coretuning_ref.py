"""tests/golden/coretuning_ref.py - the authors' Core-tuning loss (Vanint/Core-tuning, Core-tuning.py:
feature_mixup, focal_SupConLoss and the loss lines of train()) re-written in PyTorch step by step, to
produce golden values for the C "reference" variant. Imported by gen_coreloss.py; not run by tests.

Documented deviations from the script (and only these):
  - the random draws (shuffle order, the two lambda vectors) are passed in instead of drawn here;
  - positives are rows whose soft-label vectors are exactly equal, instead of the script's
    sum_c y_c 10^c encoding + LabelEncoder (which overflows for C >= 20);
  - CPU tensors, any dtype (the caller picks float64 for golden values); the soft labels are built
    in float32 as the script does, so the equality mask is the script's;
  - the NaN guard ("no positive pair -> loss 0") is kept.
"""
import torch
import torch.nn.functional as F


def contrastor(x, c0w, c0b, c2w, c2b):
    """Linear(d, d) -> ReLU -> Linear(d, cd) -> L2 normalise (the script's Contrastor)."""
    x = F.linear(x, c0w, c0b)
    x = F.relu(x)
    x = F.linear(x, c2w, c2b)
    return F.normalize(x)


def feature_mixup(features, targets, num_classes, order, lam_neg, lam_pos):
    """features [n, d] (requires grad), targets [n] int64, order [n] a permutation,
    lam_neg / lam_pos float32 numpy [n]. Returns list_f [3n, d], list_y (float32) [3n, C],
    hard_positive_index, hard_negative_index."""
    one_hot = F.one_hot(targets, num_classes).float()          # float32, as the script
    list_f = features.clone().detach()                          # originals: DETACHED
    list_y = one_hot.clone().detach()
    batch_size = features.shape[0]
    feature_norm = F.normalize(features.detach().float())       # similarities in float32
    t = targets.contiguous().view(-1, 1)
    equal_mask = torch.eq(t, t.T).float()
    logits_mask = torch.scatter(torch.ones_like(equal_mask), 1, torch.arange(batch_size).view(-1, 1), 0)
    positive_mask = equal_mask * logits_mask
    negative_mask = 1 - equal_mask
    similarity_matrix = torch.matmul(feature_norm, feature_norm.T)
    positive_matrix = similarity_matrix * positive_mask
    negative_matrix = similarity_matrix * negative_mask

    # semi-hard negatives: a shuffle of the batch, lambda clipped from below at 0.8
    order = torch.as_tensor(order, dtype=torch.int64)
    features2 = features[order]
    y_2 = one_hot[order]
    lam = [float(v) for v in lam_neg]
    for i in range(batch_size):
        if lam[i] <= 0.8:
            lam[i] = 0.8
    lam32 = torch.tensor(lam, dtype=torch.float32).view(batch_size, -1)
    lam = lam32.to(features.dtype)
    f_ = (1 - lam) * features + lam * features2
    y_ = (1 - lam32) * one_hot + lam32 * y_2
    list_f = torch.cat((list_f, f_), dim=0)
    list_y = torch.cat((list_y, y_), dim=0)

    # hard positives: argmax / argmin over the whole masked row (first index on ties), 0 -> i
    hard_negative_index = negative_matrix.argmax(dim=1)
    hard_negative_features = features[hard_negative_index]
    hard_negative_y = one_hot[hard_negative_index]
    hard_positive_index = positive_matrix.argmin(dim=1)
    for i in range(batch_size):
        if hard_positive_index[i] == 0:
            hard_positive_index[i] = i
    hard_positive_features = features[hard_positive_index]
    hard_positive_y = one_hot[hard_positive_index]
    lam32 = torch.as_tensor(lam_pos, dtype=torch.float32).view(batch_size, -1)
    lam = lam32.to(features.dtype)
    f_ = lam * hard_positive_features + (1 - lam) * hard_negative_features
    y_ = lam32 * hard_positive_y + (1 - lam32) * hard_negative_y
    list_f = torch.cat((list_f, f_), dim=0)
    list_y = torch.cat((list_y, y_), dim=0)
    return list_f, list_y, hard_positive_index, hard_negative_index


def focal_supcon(features, labels, temperature):
    """focal_SupConLoss with mixup=True, positives by exact soft-label vector equality."""
    base_temperature = temperature  # the script uses 0.07 for both: the ratio is 1
    batch_size = features.shape[0]
    mask = (labels.unsqueeze(1) == labels.unsqueeze(0)).all(dim=2).to(features.dtype)
    anchor_dot_contrast = torch.div(torch.matmul(features, features.T), temperature)
    logits_max, _ = torch.max(anchor_dot_contrast, dim=1, keepdim=True)
    logits = anchor_dot_contrast - logits_max.detach()
    logits_mask = torch.scatter(torch.ones_like(mask), 1, torch.arange(batch_size).view(-1, 1), 0)
    mask = mask * logits_mask
    exp_logits = torch.exp(logits) * logits_mask
    log_prob = logits - torch.log(exp_logits.sum(1, keepdim=True))
    weight = 1 - torch.exp(log_prob)                     # focal weight, NOT detached
    mean_log_prob_pos = (weight * mask * log_prob).mean(1)  # divides by the row count (3n)
    mean_log_prob_pos = -(temperature / base_temperature) * mean_log_prob_pos
    mean_log_prob_pos = mean_log_prob_pos.view(batch_size)
    n_nonzero = torch.nonzero(mask.sum(1)).shape[0]
    loss = mean_log_prob_pos.sum() / n_nonzero
    if torch.isnan(loss):
        loss = torch.zeros((), dtype=features.dtype)
    return loss


def reference_loss(h, targets, num_classes, fc, c0w, c0b, c2w, c2b, order, lam_neg, lam_pos, eta, temperature):
    """The train() loss lines: returns (total, ce, con, hard_pos_index, hard_neg_index)."""
    list_f, list_y, hp, hq = feature_mixup(h, targets, num_classes, order, lam_neg, lam_pos)
    z = contrastor(list_f, c0w, c0b, c2w, c2b)
    augment_prediction = F.linear(list_f, fc)
    new_size = list_f.shape[0]
    all_logits = F.log_softmax(augment_prediction, dim=1)
    ce = -torch.sum(all_logits * list_y.to(h.dtype), dim=1)
    ce = ce.view(new_size).mean()
    con = focal_supcon(z, list_y, temperature)
    return ce + eta * con, ce, con, hp, hq
